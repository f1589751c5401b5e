"""WebSocket: the page, and the socket that replays the archive then streams events.

flask-sock routes the socket and simple-websocket does the handshake; from
then on the connection belongs to a Client (client.py), to which the hub hands
the room's batches. The request ends there: the Client takes its socket (the
same descriptor, which gunicorn then no longer closes), and its read pump runs
in a greenlet of its own that takes the request's place among the worker's
connections (Chat.hand_over), so what gunicorn, Flask and the request's
greenlet held for the handshake is freed.
"""

import json
import logging
import time
from urllib.parse import urlsplit

from flask import Blueprint, abort, request, url_for
from flask_sock import Sock

from . import views
from .access import admitted, close_at_expiry
from .chat import current_chat
from .client import Client, text_frame
from .events import parse_text
from .exceptions import Invalid, RateLimited, ShuttingDown, StoreUnavailable
from .metrics import OPEN_CONNECTIONS, POSTS_REFUSED

log = logging.getLogger(__name__)
bp = Blueprint("websocket", __name__, url_prefix="/websocket")
sock = Sock()


class NoReaderThread:
    """Stands in for simple-websocket's reader thread, which is never started:
    Client.run reads the socket in the connection's own greenlet, one a client."""

    name = "unused"

    def __init__(self, target=None):
        pass

    def start(self):
        pass


# simple-websocket options: no reader thread, and no per-socket event object.
SERVER_OPTIONS = {"thread_class": NoReaderThread, "event_class": object}
# The handshake's headers wsproto decodes as ASCII text (Host as IDNA, and required):
# other bytes, or no Host, are a 400.
HANDSHAKE_TEXT_HEADERS = ("Host", "Connection", "Upgrade", "Sec-WebSocket-Protocol",
                          "Sec-WebSocket-Extensions")


@bp.get("/room")
def room():
    room, user, _ = admitted()
    return views.render_room(room, user, post_url="", leave_url=url_for("home.index"))


@bp.before_request
def check_handshake():
    """Refuses a bad handshake before it is accepted: 400, or 403 for a foreign
    Origin (its room, user and token were admitted before: access.py)."""
    if request.endpoint != "websocket.socket":
        return None
    if request.headers.get("Sec-WebSocket-Version") != "13" or \
            not request.headers.get("Sec-WebSocket-Key"):
        raise Invalid("a WebSocket handshake (version 13) is required")
    if "Host" not in request.headers or \
            not all(request.headers.get(name, "").isascii() for name in HANDSHAKE_TEXT_HEADERS):
        raise Invalid("a WebSocket handshake needs a Host, and ASCII headers")
    if not origin_allowed(request.headers.get("Origin"), request.host,
                          current_chat().settings.allowed_origins):
        POSTS_REFUSED.labels("origin").inc()
        abort(403, "this origin may not open a WebSocket here")
    # No permessage-deflate: frames are shared by every client, uncompressed.
    request.environ.pop("HTTP_SEC_WEBSOCKET_EXTENSIONS", None)
    return None


def origin_allowed(origin, host, allowed):
    """No Origin (not a browser), this host and port, or one of `allowed`."""
    if origin is None:
        return True
    origin = origin.strip().rstrip("/").lower()
    if origin in allowed:
        return True
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and parts.netloc == host.lower()


@sock.route("/room/socket", bp=bp)
def socket(ws):
    chat = current_chat()
    settings = chat.settings
    room, user, after = admitted()
    client = Client(take_socket(ws.sock), room, user, settings.send_queue,
                    settings.max_message_chars)
    ws.connected = False  # from here the Client owns the connection: simple-websocket is done
    chat.hand_over(_session, chat, client, after, close_at_expiry(client))
    return None


def take_socket(sock):
    """A new socket object for sock's connection, on the same descriptor; sock
    is detached from it, so gunicorn's close of sock as the request ends leaves
    the connection open. (Not a dup: epoll keeps watching a closed descriptor
    while another one holds its connection open.)"""
    family, kind, proto, timeout = sock.family, sock.type, sock.proto, sock.gettimeout()
    taken = sock.__class__(family, kind, proto, fileno=sock.detach())
    taken.settimeout(timeout)
    return taken


def _session(chat, client, after, expiry):
    """The connection's life after its handshake, in its own greenlet; expiry
    closes it with 1008 when its token expires (None: it does not)."""
    started = time.monotonic()
    OPEN_CONNECTIONS.labels(client.transport).inc()
    try:
        _serve(chat, client, after)
    except Exception:
        log.exception("websocket failed", extra={"fields": {"room": client.room}})
        client.abort()
    finally:
        if expiry is not None:
            expiry.kill(block=False)
        OPEN_CONNECTIONS.labels(client.transport).dec()
        log.info("websocket closed", extra={"fields": {
            "room": client.room, "user": client.user, "code": client.close_code,
            "reason": client.close_reason, "seconds": round(time.monotonic() - started, 1),
            "events": client.events_sent}})
    return None


def _serve(chat, client, after):
    """Replay and join, read until the socket closes, leave; or close at once
    (1012 while this process stops, 1011 while Redis is away)."""
    try:
        chat.join(client, after)
    except ShuttingDown:
        return _refuse(client, 1012, "server restarting; reconnect")
    except StoreUnavailable as exc:
        log.warning("redis unavailable: %s", exc, extra={"fields": {"room": client.room}})
        return _refuse(client, 1011, "the chat store is unavailable")
    log.info("websocket open", extra={"fields": {"room": client.room, "user": client.user}})
    try:
        client.run(lambda text: _on_text(chat, client, text))
    finally:
        chat.leave(client)
    return None


def _refuse(client, code, reason):
    client.close(code, reason)
    client.run(lambda text: None)


def _on_text(chat, client, text):
    """One message from the client: posted, refused with an error frame, or 1009."""
    try:
        text = parse_text(text, chat.settings.max_message_chars)
    except Invalid as exc:
        POSTS_REFUSED.labels("validation").inc()
        if exc.status == 413:
            client.close(1009, exc.message)
        return  # an empty message is ignored
    try:
        chat.rooms.post(client.room, "message", client.user, text)
    except RateLimited:
        client.send(error_frame("too many messages: wait a moment; this one was not posted"))
    except StoreUnavailable:
        client.send(error_frame("the chat store is unavailable; this message was not posted"))


def error_frame(text):
    return text_frame(json.dumps({"type": "error", "text": text}).encode())
