"""The chat server: create_app() wires the settings, the store, the hub and the routes.

The data path, one module a step:
    a transport's blueprint (refresh, longpolling, websocket, sse) posts an event
    -> room.py runs the post script in Redis (id, archive, PUBLISH)
    -> hub.py, in every process, reads its pub/sub connections in batches
       (pubsub.py: one per Redis node, one per shard on a cluster, store.py)
    -> sequence.py orders each room's events, once each, gaps backfilled
    -> each listener of the room writes the batch to its socket:
       client.py (WebSocket), stream.py (server-sent events), longpoll.py.

Before any view, access.py admits the request to its room (and in token mode
checks its token, auth.py); the server API (api.py) checks its own key.

As in Flask's tutorial, the modules are imported inside create_app, so that
gunicorn.conf.py can import chat_app.logs without loading the app; shared
state is reached through chat.current_chat().
"""

import logging
import secrets

from flask import Flask
from flask.sessions import SessionInterface

log = logging.getLogger(__name__)


class NoSessions(SessionInterface):
    """The app keeps nothing between requests: no session to open or to save."""

    def open_session(self, app, request):
        return None  # Flask uses an empty, read-only session

    def save_session(self, app, session, response):
        pass


def create_app(settings=None):
    """The Flask app for `settings` (default: read from the environment)."""
    from . import (
        access,
        api,
        cli,
        errors,
        home,
        logs,
        longpolling,
        metrics,
        presence,
        refresh,
        sse,
        store,
        websocket,
    )
    from .auth import Verifier
    from .chat import Chat
    from .config import FORM_SLACK_BYTES, Settings
    from .control import Control
    from .hub import Hub
    from .room import Rooms

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
    commands, cluster = connections.commands, connections.cluster
    rooms = Rooms(commands, settings, cluster)
    control = Control(commands, settings, cluster)
    app.extensions["chat"] = Chat(
        settings, rooms, Hub(rooms, connections.nodes, settings, control), control,
        presence.Presence(commands, settings, cluster), Verifier.from_settings(settings))
    for module in (home, refresh, longpolling, websocket, sse, presence, metrics):
        app.register_blueprint(module.bp)
    if settings.api_key:
        app.register_blueprint(api.bp)
    errors.init_app(app)
    logs.init_app(app)
    access.init_app(app)
    app.cli.add_command(cli.chat)
    return app
