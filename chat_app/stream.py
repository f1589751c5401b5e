"""A server-sent events listener: one `text/event-stream` answer that lasts.

The stream is written like WebSocket frames: the hub hands every stream of a
room the same text (built once per batch), and the stream's SocketWriter puts
it on the socket with a non-blocking write. The answer has no length and says
`Connection: close`: it ends when either side closes the connection. The
client never speaks after its request, so the request greenlet only waits for
the connection to end (`run`).

Nothing is written before `start`: events handed over earlier (the archive
replay) wait for it, so the request can still answer an error instead.
"""

import socket

import gevent

from .config import CLOSE_GRACE, READ_BYTES, SECURITY_HEADERS, SEND_BUFFER_BYTES
from .writer import SocketWriter

KEEPALIVE = b":\n\n"  # a comment line: keeps proxies from timing the stream out


def sse_text(events):
    """A batch's events as event-stream records: an `id:` line and a `data:` line each.

    Event JSON never holds a line break (json escapes them), so one data line
    carries a whole event.
    """
    return b"".join([b"id: %d\ndata: %s\n\n" % (eid, raw) for eid, raw in events])


def stream_head(retry_ms):
    """The answer's head, and the reconnect delay the browser should use."""
    head = [b"HTTP/1.1 200 OK", b"Content-Type: text/event-stream; charset=utf-8",
            b"Cache-Control: no-store", b"X-Accel-Buffering: no", b"Connection: close"]
    head += [f"{name}: {value}".encode() for name, value in SECURITY_HEADERS.items()]
    return b"\r\n".join(head) + b"\r\n\r\n" + b"retry: %d\n\n" % retry_ms


class Stream:
    """An event stream of one room, served by this process."""

    transport = "sse"

    def __init__(self, sock, room, user, send_queue, ping_interval):
        self.room = room
        self.user = user
        self.events_sent = 0            # events handed to this stream (for logs)
        self.close_reason = ""
        self._sock = sock
        self._writer = SocketWriter(sock, self, send_queue, sndbuf=SEND_BUFFER_BYTES)
        self._held = []                 # what was handed over before start
        self._closing = False
        # A peer that stops acknowledging what is sent (the keepalives, at
        # least) is dropped by the kernel after two ping intervals.
        if sock.family in (socket.AF_INET, socket.AF_INET6) and hasattr(socket, "TCP_USER_TIMEOUT"):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT,
                            int(ping_interval * 2000))

    @property
    def waiting(self):
        """Live events written but not yet taken by the socket."""
        return self._writer.waiting

    def start(self, retry_ms):
        """Writes the answer's head, then what was handed over before."""
        held, self._held = self._held, None
        self._writer.write(stream_head(retry_ms) + b"".join(held))
        if self._closing:
            gevent.spawn(self._end)

    # --- what the hub calls -------------------------------------------------

    def deliver(self, batch):
        """Sends a batch's records; returns how many events they carry.

        Never blocks. A stream whose reader is too slow is ended (writer.py
        says when; the browser reconnects with Last-Event-ID); a replay's
        events are not counted, the archive size bounds them.
        """
        if self._closing or self._writer.closed:
            return 0
        data = batch.encoded(sse_text)
        self.events_sent += len(batch)
        if self._held is not None:
            self._held.append(data)
            return len(batch)
        self._writer.write(data, 0 if batch.replay else len(batch))
        return len(batch)

    def ping(self):
        """Keepalive tick: a comment line."""
        if not self._closing and self._held is None:
            self._writer.write(KEEPALIVE)

    def close(self, code=None, reason=""):
        """Ends the stream: what is being written is finished (within
        CLOSE_GRACE), the rest dropped; the browser reconnects with Last-Event-ID."""
        if self._closing or self._writer.closed:
            return
        self._closing = True
        self.close_reason = reason
        self._writer.drop_unstarted()
        if self._held is None:
            gevent.spawn(self._end)

    def _end(self):
        self._writer.flushed(CLOSE_GRACE)
        self._writer.shutdown()

    # --- the request greenlet -----------------------------------------------

    def run(self):
        """Waits until the connection ends (the client leaves, or `close`)."""
        try:
            while self._sock.recv(READ_BYTES):
                pass  # a client sends nothing after its request
        except OSError:
            pass
        finally:
            self._writer.stop()
