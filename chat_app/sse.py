"""Server-sent events: the page, its stream, and posting from it.

The stream is the WebSocket route's over plain HTTP: the archive after
Last-Event-ID (or lastReceived), the user's join, then every new event, until
the connection ends and the user's leave is posted. Its answer is written by
a Stream (stream.py), to which the hub hands the room's batches.
"""

import logging
import time

from flask import Blueprint, abort, request, url_for

from . import views
from .access import admitted, close_at_expiry, room_url
from .chat import current_chat
from .config import SSE_RETRY_MS
from .events import parse_last_received
from .exceptions import ShuttingDown
from .metrics import OPEN_CONNECTIONS
from .stream import Stream
from .writer import AnsweredOnSocket

log = logging.getLogger(__name__)
bp = Blueprint("sse", __name__, url_prefix="/sse")
bp.add_url_rule("/room/messages", "say", views.post_message, methods=["POST"])


@bp.get("/room")
def room():
    room, user, _ = admitted()
    return views.render_room(room, user, post_url=room_url(".say"),
                             leave_url=url_for("home.index"))


@bp.get("/room/events")
def events():
    """The room's stream, ended when the request's token expires; errors before
    it starts are answered as JSON."""
    room, user, after = admitted()
    if request.headers.get("Last-Event-ID"):  # what a reconnecting EventSource sends
        after = parse_last_received(request.headers["Last-Event-ID"])
    sock = request.environ.get("gunicorn.socket")
    if sock is None:
        abort(501, "event streams are served by gunicorn (gunicorn -c gunicorn.conf.py wsgi:app)")
    chat = current_chat()
    stream = Stream(sock, room, user, chat.settings.send_queue, chat.settings.ping_interval)
    started = time.monotonic()
    OPEN_CONNECTIONS.labels(stream.transport).inc()
    try:
        _serve(chat, stream, after)
    finally:
        OPEN_CONNECTIONS.labels(stream.transport).dec()
        log.info("sse closed", extra={"fields": {
            "room": room, "user": user, "reason": stream.close_reason,
            "seconds": round(time.monotonic() - started, 1), "events": stream.events_sent}})
    return AnsweredOnSocket()


def _serve(chat, stream, after):
    """Replay and join, stream until the connection ends, leave.

    While this process stops, the stream starts and ends at once (as a
    WebSocket is closed with 1012), and the browser reconnects to another;
    other refusals (Redis away) are answered as JSON, nothing streamed yet.
    """
    try:
        chat.join(stream, after)
    except ShuttingDown:
        stream.close(1012, "server restarting; reconnect with Last-Event-ID")
        stream.start(SSE_RETRY_MS)
        stream.run()
        return
    expiry = close_at_expiry(stream)
    try:
        stream.start(SSE_RETRY_MS)
        log.info("sse open", extra={"fields": {"room": stream.room, "user": stream.user}})
        stream.run()
    finally:
        if expiry is not None:
            expiry.kill(block=False)
        chat.leave(stream)
