"""The chat server: create_app() wires the settings, the store, the hub and the routes.

The data path, one module a step:
    a transport (refresh.py, longpolling.py, websocket.py) posts an event
    -> room.py runs the post script in Redis (id, archive, PUBLISH)
    -> hub.py, in every process, reads the pub/sub connection
    -> client.py writes the frame to each WebSocket; hub.py answers long polls.

As in Flask's tutorial, the modules are imported inside create_app, so that
gunicorn.conf.py can import chat_app.logs without loading the app.
"""

import logging
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

from flask import Flask, current_app
from flask.sessions import SessionInterface

if TYPE_CHECKING:
    from .config import Settings
    from .hub import Hub
    from .presence import Presence
    from .room import Rooms
    from .store import Store

log = logging.getLogger(__name__)


@dataclass
class Chat:
    """What the routes share in one process: app.extensions["chat"]."""

    settings: "Settings"
    store: "Store"
    rooms: "Rooms"
    hub: "Hub"
    presence: "Presence"

    def enter_from_page(self, room, user):
        """user joins room from a page: present at once, then the join event
        (pages fetch who is here when they see a join or a leave)."""
        self.presence.seen(room, user, now=True)
        self.rooms.post(room, "join", user)

    def leave_from_page(self, room, user):
        """user leaves room from a page: absent at once, then the leave event."""
        self.presence.left(room, user)
        self.rooms.post(room, "leave", user)


class NoSessions(SessionInterface):
    """The app keeps nothing between requests: no session to open or to save."""

    def open_session(self, app, request):
        return None  # Flask uses an empty, read-only session

    def save_session(self, app, session, response):
        pass


def current_chat():
    """The Chat of the app serving the current request."""
    return current_app.extensions["chat"]


def create_app(settings=None):
    """The Flask app for `settings` (default: read from the environment)."""
    from . import (
        errors,
        home,
        logs,
        longpolling,
        metrics,
        presence,
        refresh,
        room,
        sse,
        store,
        websocket,
    )
    from .config import FORM_SLACK_BYTES, Settings
    from .hub import Hub

    settings = settings or Settings.from_env()
    app = Flask(__name__, template_folder="../templates", static_folder="../static")
    if settings.secret_key is None:
        log.warning("SECRET_KEY is not set: using a random key for this start")
    app.secret_key = settings.secret_key or secrets.token_hex(32)
    app.session_interface = NoSessions()
    app.config.update(
        MAX_CONTENT_LENGTH=FORM_SLACK_BYTES + 12 * settings.max_message_chars,
        SOCK_SERVER_OPTIONS=websocket.SERVER_OPTIONS,
    )
    connections = store.connect(settings.redis_url)
    rooms = room.Rooms(connections.commands, settings)
    app.extensions["chat"] = Chat(
        settings, connections, rooms, Hub(rooms, connections.pubsub, settings),
        presence.Presence(connections.commands, settings))
    for module in (home, refresh, longpolling, websocket, sse, presence, metrics):
        app.register_blueprint(module.bp)
    errors.init_app(app)
    logs.init_app(app)
    return app
