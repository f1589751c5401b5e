"""What the routes share in one process, and how a request reaches it.

As flaskr's db.get_db: create_app builds one Chat and keeps it in the app's
extensions; a view calls current_chat(). Nothing here imports the package.
"""

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from flask import current_app
from gevent.lock import Semaphore

from .config import JOIN_CONCURRENCY
from .exceptions import StoreUnavailable

if TYPE_CHECKING:
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

    def enter_from_page(self, room, user):
        """user joins room from a page: present at once, then the join event
        (pages fetch who is here when they see a join or a leave)."""
        self.presence.seen(room, user, now=True)
        self.rooms.post(room, "join", user)

    def leave_from_page(self, room, user):
        """user leaves room from a page: absent at once, then the leave event."""
        self.presence.left(room, user)
        self.rooms.post(room, "leave", user)

    @contextmanager
    def connected(self, listener, after):
        """A WebSocket's or a stream's time in its room.

        Before the block: the listener gets the archive after `after` and from
        then on every new event; its user is present, and their join posted.
        After it: the listener is detached, and the user's leave posted.
        Raises StoreUnavailable or ShuttingDown (before the block) when the
        listener cannot be attached or the join cannot be posted.
        """
        room, user = listener.room, listener.user
        with self.joining:
            self.hub.attach(listener, after)
            self.presence.socket_opened(room, user)
            try:
                self.rooms.post(room, "join", user)
            except StoreUnavailable:
                self.hub.detach(listener)
                self.presence.socket_closed(room, user)
                raise
        try:
            yield
        finally:
            self.hub.detach(listener)
            self.presence.socket_closed(room, user)
            try:
                self.rooms.post(room, "leave", user)
            except StoreUnavailable:
                pass


def current_chat():
    """The Chat of the app serving the current request."""
    return current_app.extensions["chat"]
