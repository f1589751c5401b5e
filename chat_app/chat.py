"""What the routes share in one process, and how a request reaches it.

As flaskr's db.get_db: create_app builds one Chat and keeps it in the app's
extensions; a view calls current_chat(). Nothing here imports the package.
"""

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import gevent
from flask import current_app
from gevent.lock import Semaphore

from .config import JOIN_CONCURRENCY
from .exceptions import StoreUnavailable

if TYPE_CHECKING:
    from gevent.pool import Pool

    from .auth import Verifier
    from .config import Settings
    from .control import Control
    from .hub import Hub
    from .presence import Presence
    from .room import Rooms


@dataclass
class Chat:
    """The settings, the rooms in Redis, this process's hub, the requests to
    every process's hub, presence, and the token verifier (None in open mode)."""

    settings: "Settings"
    rooms: "Rooms"
    hub: "Hub"
    control: "Control"
    presence: "Presence"
    verifier: "Verifier | None" = None
    # A storm of new sockets and streams queues here, not on the Redis pool.
    joining: Semaphore = field(default_factory=lambda: Semaphore(JOIN_CONCURRENCY))
    # The worker's pool of connection greenlets, worker_connections of them
    # (worker.py); None when the app runs outside the chat's gunicorn worker.
    connections: "Pool | None" = None

    def hand_over(self, serve, *args):
        """Starts serve(*args) in a greenlet of its own, which takes the current
        greenlet's place in the connection pool: released and taken again in
        one step with no yield between, so no other connection can take the
        place and the pool's count of connections stays the same. The current
        request can then end while the connection it opened lives on."""
        greenlet = gevent.Greenlet(serve, *args)
        if self.connections is None:
            greenlet.start()
            return greenlet
        self.connections.discard(gevent.getcurrent())
        self.connections.start(greenlet, blocking=False)
        return greenlet

    def enter_from_page(self, room, user):
        """user joins room from a page: present at once, then the join event
        (pages fetch who is here when they see a join or a leave)."""
        self.presence.seen(room, user, now=True)
        self.rooms.post(room, "join", user)

    def leave_from_page(self, room, user):
        """user leaves room from a page: absent at once, then the leave event."""
        self.presence.left(room, user)
        self.rooms.post(room, "leave", user)

    def join(self, listener, after):
        """A WebSocket or a stream enters its room: from now on it gets the
        archive after `after`, then every new event; its user is present, and
        their join posted, in the same round trip to Redis as the archive's
        read. Raises StoreUnavailable or ShuttingDown when that cannot be done
        (the listener is then not attached)."""
        room, user = listener.room, listener.user
        with self.joining:
            presence = self.presence.socket_opened(room, user)
            try:
                self.hub.attach(listener, after, read=lambda after: self.rooms.join(
                    room, user, after, presence))
            except BaseException:
                self.presence.socket_closed(room, user)
                raise

    def leave(self, listener):
        """The connection of a listener that `join` attached has ended: it is
        detached, and its user's leave posted (if Redis answers), their
        presence here removed with it when this was their last connection."""
        self.hub.detach(listener)
        member = self.presence.socket_closed(listener.room, listener.user)
        try:
            self.rooms.leave(listener.room, listener.user, member)
        except StoreUnavailable:
            pass

def current_chat():
    """The Chat of the app serving the current request."""
    return current_app.extensions["chat"]
