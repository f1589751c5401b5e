"""The only writer to a listener's socket: non-blocking writes, and a backlog.

The hub hands every listener of a room the same bytes in one loop, so a write
must never block or yield: `write` puts what the socket takes now into the
kernel, and keeps the rest, in order, for a drain greenlet that exists only
while there is a backlog (gorilla's writePump, on demand).

A reader is too slow, and its listener is cut off (closed with 1013; it
resumes from its newest event), when more than CHAT_SEND_QUEUE events wait in
its backlog and the oldest of them has waited STALL_GRACE: a reader that
stops is cut within STALL_GRACE, and a healthy one that stalls for less is
never. Whatever their age, no backlog outgrows BACKLOG_MAX_BYTES.

TLS is expected to end at the proxy in front (gunicorn.conf.py refuses to
serve it): the writes go to the socket's file descriptor.
"""

import logging
import os
import socket
import time

import gevent
from flask import Response
from gevent.socket import wait_write

from .config import BACKLOG_MAX_BYTES, STALL_GRACE
from .metrics import SLOW_CLIENTS_CLOSED

log = logging.getLogger(__name__)

SLOW_REASON = "client too slow; reconnect and resume from the newest event shown"


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

    Each chunk of the backlog carries the number of events in it and when it
    was queued, for the too-slow rule (module docstring). A write error (the
    peer is gone) shuts the socket down, which ends the listener's reading
    greenlet.
    """

    __slots__ = ("_sock", "_fd", "_listener", "_send_queue", "_backlog", "_bytes", "_started",
                 "waiting", "closed", "_drainer")

    def __init__(self, sock, listener=None, send_queue=None, sndbuf=None):
        self._sock = sock
        self._fd = sock.fileno()
        self._listener = listener       # cut off when too slow; None: never
        self._send_queue = send_queue
        if sndbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        self._backlog = []          # [bytes or memoryview, events, queued at], oldest first
        self._bytes = 0             # bytes in the backlog
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

        (The fan-out calls this for every listener of a room, so it is written
        out rather than layered.)
        """
        if self.closed:
            return
        if self._backlog:
            self._queue(data, events)
            return
        try:
            written = os.write(self._fd, data)
        except BlockingIOError:
            written = 0
        except OSError:
            self.abort()
            return
        if written < len(data):
            self._queue(memoryview(data)[written:], events)
            self._started = written > 0
            if self._drainer is None:
                self._drainer = gevent.spawn(self._drain)

    def _queue(self, data, events):
        self._backlog.append([data, events, time.monotonic()])
        self._bytes += len(data)
        self.waiting += events
        self._check()

    def _check(self):
        """Cuts the listener off if its reader is too slow (module docstring)."""
        if self._listener is None or not self._backlog:
            return
        stalled = (self.waiting > self._send_queue
                   and time.monotonic() - self._backlog[0][2] >= STALL_GRACE)
        if stalled or self._bytes > BACKLOG_MAX_BYTES:
            cut_off(self._listener, self.waiting, self._bytes)

    def _drain(self):
        """The write pump: runs only while the backlog holds bytes; while the
        socket takes nothing it checks the too-slow rule when the oldest chunk
        has waited STALL_GRACE."""
        try:
            while self._backlog and not self.closed:
                oldest_due = self._backlog[0][2] + STALL_GRACE - time.monotonic()
                try:
                    wait_write(self._fd, timeout=max(oldest_due, 0.01))
                except socket.timeout:
                    self._check()
                    continue
                if not self._backlog or self.closed:  # emptied while waiting (an abort, a drop)
                    break
                chunk = self._backlog[0]
                written = write_now(self._fd, chunk[0])
                self._bytes -= written
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
            data, events, _ = self._backlog.pop()
            self._bytes -= len(data)
            self.waiting -= events

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
        self._bytes = 0
        self.waiting = 0
        self.shutdown()

    def stop(self):
        """No more writes: the backlog is dropped and the drainer stopped."""
        self.closed = True
        if self._drainer is not None:
            self._drainer.kill(block=False)


def cut_off(listener, waiting, size):
    """Closes a listener whose reader is too slow (1013), counted and logged."""
    SLOW_CLIENTS_CLOSED.inc()
    log.warning("closing a slow client", extra={"fields": {
        "room": listener.room, "user": listener.user, "transport": listener.transport,
        "waiting": waiting, "bytes": size}})
    listener.close(1013, SLOW_REASON)


class AnsweredOnSocket(Response):
    """What a view returns when its listener wrote the answer to the socket
    itself: gunicorn's ALREADY_HANDLED, so the worker writes nothing and goes
    on reading the connection (the next request, or the client's close)."""

    def __call__(self, environ, start_response):
        from gunicorn.workers.base_async import ALREADY_HANDLED

        return ALREADY_HANDLED
