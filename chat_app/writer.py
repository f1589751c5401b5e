"""The only writer to a listener's socket: non-blocking writes, and a backlog.

The hub hands every listener of a room the same bytes in one loop, so a write
must never block or yield: `write` puts what the socket takes now into the
kernel, and keeps the rest, in order, for a drain greenlet that exists only
while there is a backlog (gorilla's writePump, on demand).

TLS is expected to end at the proxy in front: the writes go to the socket's
file descriptor.
"""

import logging
import os
import socket

import gevent
from flask import Response
from gevent.socket import wait_write

from .metrics import SLOW_CLIENTS_CLOSED

log = logging.getLogger(__name__)


def write_now(fd, data):
    """Writes what the socket takes now; returns how much (never blocks).

    Raises OSError when the peer is gone.
    """
    try:
        return os.write(fd, data)
    except BlockingIOError:
        return 0


class SocketWriter:
    """Writes whole chunks to one socket, in order, never blocking the caller.

    Each chunk carries a count of the events in it, so its listener can tell
    when more than `send_queue` events wait for a slow reader (`write` says).
    A write error (the peer is gone) shuts the socket down, which ends the
    listener's reading greenlet.
    """

    __slots__ = ("_sock", "_fd", "_send_queue", "_backlog", "_started", "waiting", "closed",
                 "_drainer")

    def __init__(self, sock, send_queue=None, sndbuf=None):
        self._sock = sock
        self._fd = sock.fileno()
        self._send_queue = send_queue
        if sndbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        self._backlog = []          # [bytes or memoryview, events], oldest first
        self._started = False       # the first chunk is partly written
        self.waiting = 0            # events in the backlog
        self.closed = False         # nothing more may be written
        self._drainer = None        # the drain greenlet, while the backlog is non-empty

    @property
    def draining(self):
        """Whether a backlog waits for the socket (and a drain greenlet exists)."""
        return self._drainer is not None

    def write(self, data, events=0):
        """Writes data after everything before it, now or from the backlog.

        Returns whether more than send_queue events now wait: the reader is
        too slow, and its listener cuts it off. (The fan-out calls this for
        every listener of a room, so it is written out rather than layered.)
        """
        if self.closed:
            return False
        if self._backlog:
            self._backlog.append([data, events])
            self.waiting += events
            return self._send_queue is not None and self.waiting > self._send_queue
        try:
            written = os.write(self._fd, data)
        except BlockingIOError:
            written = 0
        except OSError:
            self.abort()
            return False
        if written < len(data):
            self._backlog.append([memoryview(data)[written:], events])
            self._started = written > 0
            self.waiting += events
            if self._drainer is None:
                self._drainer = gevent.spawn(self._drain)
            return self._send_queue is not None and self.waiting > self._send_queue
        return False

    def _drain(self):
        """The write pump: runs only while the backlog holds bytes."""
        try:
            while self._backlog and not self.closed:
                wait_write(self._fd)
                chunk = self._backlog[0]
                written = write_now(self._fd, chunk[0])
                if written == len(chunk[0]):
                    del self._backlog[0]
                    self.waiting -= chunk[1]
                    self._started = False
                elif written:
                    chunk[0] = memoryview(chunk[0])[written:]
                    self._started = True
        except OSError:
            self.abort()
        finally:
            self._drainer = None

    def drop_unstarted(self):
        """Drops the backlog's chunks not yet begun; a chunk partly written stays,
        so what is written next starts on a chunk boundary."""
        keep = 1 if self._started else 0
        while len(self._backlog) > keep:
            self.waiting -= self._backlog.pop()[1]

    def flushed(self, timeout):
        """Waits up to timeout for the backlog to be written; whether it was."""
        drainer = self._drainer
        if drainer is not None:
            drainer.join(timeout=timeout)
        return not self._backlog

    def shutdown(self):
        """Ends the connection both ways: a greenlet reading the socket returns at once."""
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def abort(self):
        """Drops everything not yet written and ends the connection."""
        self.closed = True
        self._backlog.clear()
        self.waiting = 0
        self.shutdown()

    def stop(self):
        """No more writes: the backlog is dropped and the drainer stopped."""
        self.closed = True
        if self._drainer is not None:
            self._drainer.kill(block=False)


def cut_off(listener, waiting, reason):
    """Closes a listener that reads too slowly, counted and logged."""
    SLOW_CLIENTS_CLOSED.inc()
    log.warning("closing a slow client", extra={"fields": {
        "room": listener.room, "user": listener.user, "transport": listener.transport,
        "waiting": waiting}})
    listener.close(1013, reason)


class AnsweredOnSocket(Response):
    """What a view returns when its listener wrote the answer to the socket
    itself: gunicorn's ALREADY_HANDLED, so the worker writes nothing and goes
    on reading the connection (the next request, or the client's close)."""

    def __call__(self, environ, start_response):
        from gunicorn.workers.base_async import ALREADY_HANDLED

        return ALREADY_HANDLED
