"""One WebSocket client: its read pump, and the one path that writes its socket.

As in gorilla's chat example, a client has a read pump and a write pump, but
here the write pump exists only when it has work:

- `run` is the read pump. It runs in the request greenlet, so a connected
  client costs one greenlet (simple-websocket's reader thread is not started).
- `send` is the only writer. The hub hands every client of a room the same
  frame bytes; `send` writes them at once with a non-blocking write, and what
  the socket does not take waits in this client's buffer, drained by a writer
  greenlet that lives only while the buffer is non-empty. Events, pongs,
  pings and close frames all go through it, so frames never interleave.

TLS is expected to end at the proxy in front (see the README): the
non-blocking write goes to the socket's file descriptor.
"""

import logging
import os
import socket
import struct

import gevent
from gevent.socket import wait_write
from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, TextMessage
from wsproto.utilities import LocalProtocolError

from .config import WS_CLOSE_GRACE, WS_FRAME_SLACK_BYTES, WS_READ_BYTES, WS_SNDBUF
from .metrics import SLOW_CLIENTS_CLOSED

log = logging.getLogger(__name__)

PING_FRAME = b"\x89\x00"  # an empty ping, server to client (unmasked)


def text_frame(payload):
    """One unmasked, final WebSocket text frame (RFC 6455, 5.2) around payload."""
    size = len(payload)
    if size < 126:
        return bytes((0x81, size)) + payload
    if size < 65536:
        return struct.pack("!BBH", 0x81, 126, size) + payload
    return struct.pack("!BBQ", 0x81, 127, size) + payload


class Client:
    """A WebSocket client of one room, served by this process."""

    def __init__(self, sock, room, user, send_queue, max_message_chars):
        self.room = room
        self.user = user
        self.events_sent = 0            # events handed to this socket (for logs)
        self.close_code = None          # the close code, sent or received
        self.close_reason = ""
        self._sock = sock
        self._fd = sock.fileno()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, WS_SNDBUF)
        self._conn = Connection(ConnectionType.SERVER)
        self._send_queue = send_queue
        self._max_chars = max_message_chars + WS_FRAME_SLACK_BYTES
        self._pending = []              # [bytes/memoryview, events] not yet written
        self._pending_events = 0
        self._writer = None             # the drain greenlet, while _pending is non-empty
        self._heard = True              # a frame arrived since the last ping
        self._closed = False            # nothing more may be written
        self._closing = False           # our close frame is queued
        self._deadline = None

    # --- the write path -----------------------------------------------------

    def send(self, data, events=1):
        """Writes data (whole frames) after everything queued before it.

        Never blocks and never yields, so the hub can call it for every client
        in a loop. A client with more than `send_queue` events waiting is
        closed with 1013 (it resumes with lastReceived); `events` is how many
        live events data holds (0 for the archive replay, which the archive
        size bounds).
        """
        if self._closing or self._closed:
            return
        self.events_sent += events
        self._write(data, events)
        if self._pending_events > self._send_queue:
            SLOW_CLIENTS_CLOSED.inc()
            log.warning("closing a slow client", extra={"fields": {
                "room": self.room, "user": self.user, "waiting": self._pending_events}})
            self.close(1013, "client too slow; reconnect with lastReceived")

    def _write(self, data, events):
        if self._pending:
            self._pending.append([data, events])
            self._pending_events += events
            return
        try:
            written = os.write(self._fd, data)
        except BlockingIOError:
            written = 0
        except OSError:
            self._abort()
            return
        if written < len(data):
            self._pending.append([memoryview(data)[written:], events])
            self._pending_events += events
            self._writer = gevent.spawn(self._drain)

    def _drain(self):
        """The write pump: runs only while the buffer holds bytes."""
        try:
            while self._pending and not self._closed:
                wait_write(self._fd)
                chunk = self._pending[0]
                try:
                    written = os.write(self._fd, chunk[0])
                except BlockingIOError:
                    continue
                if written == len(chunk[0]):
                    del self._pending[0]
                    self._pending_events -= chunk[1]
                else:
                    chunk[0] = memoryview(chunk[0])[written:]
        except OSError:
            self._abort()
        finally:
            self._writer = None

    def ping(self):
        """Keepalive tick: closes a peer silent since the last tick, else pings it."""
        if self._closing or self._closed:
            return
        if not self._heard:
            self.close(1001, "ping timeout")
            self._shutdown()
            return
        self._heard = False
        self._write(PING_FRAME, 0)

    def close(self, code, reason=""):
        """Sends a close frame and ends the connection within WS_CLOSE_GRACE."""
        if self._closing or self._closed:
            return
        self.close_code, self.close_reason = code, reason
        self._queue_close(self._conn.send(CloseConnection(code=code, reason=reason)))
        self._deadline = gevent.spawn_later(WS_CLOSE_GRACE, self._shutdown)

    def _queue_close(self, frame):
        """Queues a close frame; what is queued but not yet started is dropped.

        The client resumes with lastReceived; a chunk already partly written is
        finished first, so the close frame starts on a frame boundary.
        """
        self._closing = True
        while len(self._pending) > 1:
            self._pending_events -= self._pending.pop()[1]
        self._write(frame, 0)

    def _shutdown(self):
        """Ends the read pump: its recv returns at once."""
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _abort(self):
        self._closed = True
        self._pending.clear()
        self._pending_events = 0
        self._shutdown()

    # --- the read pump ------------------------------------------------------

    def run(self, on_text):
        """Reads frames until the connection ends; each text message goes to on_text.

        on_text(text) may call send and close. Binary messages are refused with
        1003, messages far over the size limit with 1009 before they are read
        whole, and a ping is answered with a pong through the write path.
        """
        parts, size = [], 0
        try:
            while self._conn.state is not ConnectionState.CLOSED:
                data = self._sock.recv(WS_READ_BYTES)
                if not data:
                    break
                self._heard = True
                self._conn.receive_data(data)
                for event in self._conn.events():
                    if isinstance(event, TextMessage) and not self._closing:
                        size += len(event.data)
                        if size > self._max_chars:
                            self.close(1009, "message too big")
                            continue
                        parts.append(event.data)
                        if event.message_finished:
                            text, parts, size = "".join(parts), [], 0
                            on_text(text)
                    elif isinstance(event, BytesMessage) and not self._closing:
                        self.close(1003, "binary frames are not accepted")
                    elif isinstance(event, Ping) and not self._closing:
                        self._write(self._conn.send(event.response()), 0)
                    elif isinstance(event, CloseConnection):
                        self._on_close_frame(event)
                        if self._closing:
                            return
                    # Pong frames only prove the peer alive (_heard).
        except (OSError, LocalProtocolError):
            pass
        finally:
            self._finish()

    def _on_close_frame(self, event):
        if self._conn.state is ConnectionState.REMOTE_CLOSING:
            self.close_code, self.close_reason = event.code, event.reason or ""
            self._queue_close(self._conn.send(event.response()))
        elif self._conn.state is ConnectionState.OPEN:
            # wsproto found a protocol error (bad UTF-8: 1007, bad frame: 1002).
            self.close(event.code, event.reason or "")

    def _finish(self):
        """Flushes a queued close frame (for WS_CLOSE_GRACE at most), then stops writes."""
        writer = self._writer
        if writer is not None and self._closing:
            writer.join(timeout=WS_CLOSE_GRACE)
        self._closed = True
        if self._writer is not None:
            self._writer.kill(block=False)
        if self._deadline is not None:
            self._deadline.kill(block=False)
