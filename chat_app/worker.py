"""The gunicorn worker: gunicorn's gevent worker, with one pool of connections the app shares.

gunicorn's gevent worker bounds a worker's connections (`worker_connections`)
with a pool of the greenlets that serve them, one pool per listening socket,
which it keeps to itself. This worker makes one pool for all its listeners,
which the app shares (gunicorn.conf.py sets Chat.connections), so that a
WebSocket, served by a greenlet of its own once its handshake is done
(Chat.hand_over), still counts: a full worker stops accepting and new
connections wait in the listen queue, and a stopping worker waits for its
WebSockets as for its requests. A new connection's first request is also
given longer than gunicorn gives it (FIRST_REQUEST_WAIT, not keepalive).
"""

import time
import weakref
from functools import partial

import gevent
from gevent.pool import Pool
from gevent.server import StreamServer
from gunicorn.workers.ggevent import GeventWorker

from .config import FIRST_REQUEST_WAIT


class Worker(GeventWorker):
    """A gevent worker whose connections, requests and WebSockets alike, are
    greenlets of one pool of `worker_connections`."""

    def init_process(self):
        # A greenlet does not record who spawned it and from where (ten frames
        # of the spawner's stack, kept for the greenlet's life): debugging
        # aid that costs every connection time and memory.
        gevent.config.track_greenlet_tree = False
        self.connections = Pool(self.worker_connections)
        self._requested = weakref.WeakSet()  # connections (greenlets) past their first request
        super().init_process()  # runs the worker; returns only as it exits

    def timeout_ctx(self):
        """How long gunicorn waits for a connection's next request before it
        closes the connection, unanswered: FIRST_REQUEST_WAIT for its first
        (gunicorn would give it `keepalive`, and a worker busy for longer than
        that, as in a storm of joins, dropped connections it had accepted),
        `keepalive` for each one after on a kept-alive connection. A stopping
        worker waits for either as for any connection (`run`)."""
        connection = gevent.getcurrent()
        if connection in self._requested:
            return gevent.Timeout(self.cfg.keepalive, False)
        self._requested.add(connection)
        return gevent.Timeout(FIRST_REQUEST_WAIT, False)

    def run(self):
        """Serves until told to stop, then waits graceful_timeout for the
        pool to empty (the app closes its WebSockets and streams on SIGTERM)."""
        servers = [self._serve(listener) for listener in self.sockets]
        while self.alive:
            self.notify()
            gevent.sleep(1.0)
        for server in servers:
            server.close()
        deadline = time.monotonic() + self.cfg.graceful_timeout
        while not self.connections.join(timeout=1.0):
            if time.monotonic() > deadline:
                self.log.warning("Worker graceful timeout (pid:%s)", self.pid)
                self.connections.kill(timeout=1)
                return
            self.notify()

    def _serve(self, listener):
        listener.setblocking(1)
        server = StreamServer(listener, handle=partial(self.handle, listener),
                              spawn=self.connections)
        if self.cfg.workers > 1:
            server.max_accept = 1  # leave the next connection to another worker
        server.start()
        return server
