"""Long polling: the page asks for the events after the last one it has."""

from flask import Blueprint, Response, redirect, render_template, request, url_for

from . import current_chat
from .events import Invalid, parse_text, read_query
from .hub import Answered
from .metrics import OPEN_CONNECTIONS

bp = Blueprint("longpolling", __name__, url_prefix="/longpolling")


@bp.get("")
def join():
    room, user, _ = read_query(request.environ)
    current_chat().enter_from_page(room, user)
    return redirect(url_for(".room", user=user, room=room), 302)


@bp.get("/room")
def room():
    room, user, _ = read_query(request.environ)
    return render_template(
        "longpolling_room.html", room=room, user=user,
        transport="longpolling", transport_name="long polling",
        post_url=url_for(".say", user=user, room=room),
        leave_url=url_for(".leave", user=user, room=room),
        max_chars=current_chat().settings.max_message_chars)


@bp.get("/room/messages")
def messages():
    room, user, after = read_query(request.environ, user_required=False)
    chat = current_chat()
    if user is not None:
        began = chat.presence.seen(room, user)
    sock = request.environ.get("gunicorn.socket")  # None under the test client
    OPEN_CONNECTIONS.labels("longpolling").inc()
    try:
        answer = chat.hub.wait(room, after, chat.settings.longpoll_timeout,
                               fd=sock.fileno() if sock else None, keep_alive=_keeps_alive())
    finally:
        OPEN_CONNECTIONS.labels("longpolling").dec()
        if user is not None:
            chat.presence.poll_ended(room, user, began)
    if isinstance(answer, Answered):
        if answer.rest:
            sock.sendall(answer.rest)
        return AnsweredOnSocket()
    return Response(answer, mimetype="application/json")


def _keeps_alive():
    """Whether the answer may keep the connection open (as gunicorn decides)."""
    return (request.environ.get("SERVER_PROTOCOL") == "HTTP/1.1"
            and "close" not in request.headers.get("Connection", "").lower())


class AnsweredOnSocket(Response):
    """Tells gunicorn's worker the answer is written (its ALREADY_HANDLED): it
    goes on reading the connection, for the next poll or the client's close."""

    def __call__(self, environ, start_response):
        from gunicorn.workers.base_async import ALREADY_HANDLED

        return ALREADY_HANDLED


@bp.post("/room/messages")
def say():
    room, user, _ = read_query(request.environ)
    chat = current_chat()
    text = parse_text(_message_field(), chat.settings.max_message_chars)
    event = chat.rooms.post(room, "message", user, text)
    return Response(event, status=201, mimetype="application/json")


def _message_field():
    """The `message` of a form or of a JSON object body."""
    if request.is_json:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise Invalid('the body must be a JSON object like {"message": "..."}')
        return body.get("message")
    return request.form.get("message")


@bp.get("/room/leave")
def leave():
    room, user, _ = read_query(request.environ)
    current_chat().leave_from_page(room, user)
    return redirect(url_for("home.index"), 302)
