"""The chat server: create_app() wires the settings, the store, the hub and the routes.

The data path, one module a step:
    a transport (refresh.py, longpolling.py, websocket.py) posts an event
    -> room.py runs the post script in Redis (id, archive, PUBLISH)
    -> hub.py, in every process, reads the pub/sub connection
    -> client.py writes the frame to each WebSocket; hub.py answers long polls.
"""

import logging
import secrets
from dataclasses import dataclass

from flask import Flask

from . import errors, home, longpolling, refresh, websocket
from .config import FORM_SLACK_BYTES, Settings
from .hub import Hub
from .room import Rooms
from .store import Store, connect

log = logging.getLogger(__name__)


@dataclass
class Chat:
    """What the routes share in one process: app.extensions["chat"]."""

    settings: Settings
    store: Store
    rooms: Rooms
    hub: Hub


def create_app(settings=None):
    """The Flask app for `settings` (default: read from the environment)."""
    settings = settings or Settings.from_env()
    app = Flask(__name__, template_folder="../templates", static_folder="../static")
    if settings.secret_key is None:
        log.warning("SECRET_KEY is not set: using a random key for this start")
        app.secret_key = secrets.token_hex(32)
    else:
        app.secret_key = settings.secret_key
    app.config.update(
        MAX_CONTENT_LENGTH=FORM_SLACK_BYTES + 12 * settings.max_message_chars,
        SOCK_SERVER_OPTIONS=websocket.SERVER_OPTIONS,
    )
    store = connect(settings.redis_url)
    rooms = Rooms(store.commands, settings)
    app.extensions["chat"] = Chat(settings, store, rooms, Hub(rooms, store.pubsub, settings))
    for module in (home, refresh, longpolling, websocket):
        app.register_blueprint(module.bp)
    errors.init_app(app)
    return app
