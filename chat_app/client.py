"""A WebSocket listener: its read pump, and its frames.

As in gorilla's chat example, a client has a read pump and a write pump, but
here the write pump exists only when it has work (writer.py):

- `run` is the read pump, and the socket's owner: the socket is closed when
  it returns. It runs in the connection's one greenlet (simple-websocket's
  reader thread is not started).
- Every frame goes out through the client's SocketWriter: the hub's batches
  (the same frame bytes for every client of a room), error frames, pongs,
  pings and the close frame, so frames never interleave.
"""

import struct

import gevent
from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, TextMessage
from wsproto.utilities import LocalProtocolError

from .config import CLOSE_GRACE, READ_BYTES, SEND_BUFFER_BYTES, WS_FRAME_SLACK_BYTES
from .writer import SocketWriter

PING_FRAME = b"\x89\x00"  # an empty ping, server to client (unmasked)


def text_frame(payload):
    """One unmasked, final WebSocket text frame (RFC 6455, 5.2) around payload."""
    size = len(payload)
    if size < 126:
        return bytes((0x81, size)) + payload
    if size < 65536:
        return struct.pack("!BBH", 0x81, 126, size) + payload
    return struct.pack("!BBQ", 0x81, 127, size) + payload


def frames(events):
    """A batch's events as consecutive text frames."""
    return b"".join([text_frame(raw) for _, raw in events])


class Client:
    """A WebSocket client of one room, served by this process."""

    transport = "websocket"

    def __init__(self, sock, room, user, send_queue, max_message_chars):
        self.room = room
        self.user = user
        self.events_sent = 0            # events handed to this socket (for logs)
        self.close_code = None          # the close code, sent or received
        self.close_reason = ""
        self._sock = sock
        self._writer = SocketWriter(sock, self, send_queue, sndbuf=SEND_BUFFER_BYTES)
        self._conn = Connection(ConnectionType.SERVER)
        self._max_chars = max_message_chars + WS_FRAME_SLACK_BYTES
        self._heard = True              # a frame arrived since the last ping
        self._closing = False           # our close frame is queued
        self._deadline = None

    @property
    def waiting(self):
        """Live events written but not yet taken by the socket."""
        return self._writer.waiting

    # --- what the hub calls -------------------------------------------------

    def deliver(self, batch):
        """Sends a batch's frames; returns how many events they carry.

        Never blocks and never yields, so the hub can call it for every client
        in a loop. A client that reads too slowly is closed with 1013
        (writer.py says when; it resumes with lastReceived); a replay's events
        are not counted, the archive size bounds them.
        """
        if self._closing or self._writer.closed:
            return 0
        count = len(batch.events)
        live = 0 if batch.replay else count
        self.events_sent += live
        self._writer.write(batch.encoded(frames), live)
        return count

    def send(self, data, events=1):
        """Writes whole frames after everything queued before them."""
        if self._closing or self._writer.closed:
            return
        self.events_sent += events
        self._writer.write(data, events)

    def ping(self):
        """Keepalive tick: closes a peer silent since the last tick, else pings it."""
        if self._closing or self._writer.closed:
            return
        if not self._heard:
            self.close(1001, "ping timeout")
            self._writer.shutdown()
            return
        self._heard = False
        self._writer.write(PING_FRAME)

    def close(self, code, reason=""):
        """Sends a close frame and ends the connection within CLOSE_GRACE."""
        if self._closing or self._writer.closed:
            return
        self.close_code, self.close_reason = code, reason
        self._queue_close(self._conn.send(CloseConnection(code=code, reason=reason)))
        self._deadline = gevent.spawn_later(CLOSE_GRACE, self._writer.shutdown)

    def abort(self):
        """Ends the connection at once, with no close frame: for a failure of
        the server's own, where no read pump will end it."""
        self._writer.abort()
        self._finish()

    def _queue_close(self, frame):
        """Queues a close frame after the frame being written, dropping those not begun.

        The client resumes with lastReceived, so what it misses is archived.
        """
        self._closing = True
        self._writer.drop_unstarted()
        self._writer.write(frame)

    # --- the read pump ------------------------------------------------------

    def run(self, on_text):
        """Reads frames until the connection ends; each text message goes to on_text.

        on_text(text) may call send and close. Binary messages are refused with
        1003, messages far over the size limit with 1009 before they are read
        whole, and a ping is answered with a pong through the writer.
        """
        parts, size = [], 0
        try:
            while self._conn.state is not ConnectionState.CLOSED:
                data = self._sock.recv(READ_BYTES)
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
                        self._writer.write(self._conn.send(event.response()))
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
        """Flushes a queued close frame (for CLOSE_GRACE at most), stops writes
        and closes the socket, which the client owns."""
        if self._closing:
            self._writer.flushed(CLOSE_GRACE)
        self._writer.stop()
        if self._deadline is not None:
            self._deadline.kill(block=False)
        self._sock.close()
