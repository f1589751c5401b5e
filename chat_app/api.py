"""The server API: what the application in front of the chat does from its backend.

Registered only when CHAT_API_KEY is set (otherwise these routes answer 404).
Every call carries `Authorization: Bearer <CHAT_API_KEY>`, compared in
constant time; a missing or wrong key is 401 before anything else is read.
JSON in and out; errors as on the other API routes (errors.py).

    POST /api/rooms/<room>/messages    {"user": U, "text": T} -> 201, the event (no rate limit)
    POST /api/rooms/<room>/disconnect  {"user": U} -> 200 {"disconnected": N}, in every process
    GET  /api/rooms/<room>/presence    -> 200 {"room": R, "users": [...]}
"""

import hmac

from flask import Blueprint, jsonify, request

from .auth import bearer
from .chat import current_chat
from .events import parse_room, parse_text, parse_user
from .exceptions import AuthRefused, Invalid
from .presence import present
from .views import created

bp = Blueprint("api", __name__, url_prefix="/api/rooms/<room>")


@bp.before_request
def check_key():
    """401 unless the request carries the API key."""
    given = bearer(request.headers.get("Authorization"))
    expected = current_chat().settings.api_key.encode()
    if given is None or not hmac.compare_digest(given.encode("latin-1"), expected):
        raise AuthRefused("a valid API key is required: Authorization: Bearer <CHAT_API_KEY>")


@bp.post("/messages")
def post_message(room):
    """Posts a message as the body's user: 201 with the event."""
    room, body = parse_room(room), json_body()
    chat = current_chat()
    user = parse_user(_string(body, "user"))
    text = parse_text(body.get("text"), chat.settings.max_message_chars)
    return created(chat.rooms.post(room, "message", user, text, limited=False))


@bp.post("/disconnect")
def disconnect(room):
    """Closes the body's user's WebSockets (1008) and streams in room, in every process."""
    room, body = parse_room(room), json_body()
    user = parse_user(_string(body, "user"))
    return jsonify(disconnected=current_chat().control.disconnect(room, user))


@bp.get("/presence")
def presence(room):
    return present(parse_room(room))


def json_body():
    """The request's body, a JSON object (whatever its Content-Type says); else 400."""
    body = request.get_json(force=True, silent=True)
    if not isinstance(body, dict):
        raise Invalid("the body must be a JSON object")
    return body


def _string(body, name):
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise Invalid(f"{name} must be a string")
    return value
