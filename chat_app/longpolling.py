"""Long polling: the page asks for the events after the last one it has."""

from flask import Blueprint, request

from . import views
from .access import admitted, room_url, seconds_left
from .chat import current_chat
from .exceptions import ShuttingDown
from .longpoll import LongPoll
from .metrics import OPEN_CONNECTIONS

bp = Blueprint("longpolling", __name__, url_prefix="/longpolling")
bp.add_url_rule("", "join", views.join)
bp.add_url_rule("/room/leave", "leave", views.leave)
bp.add_url_rule("/room/messages", "say", views.post_message, methods=["POST"])


@bp.get("/room")
def room():
    room, user, _ = admitted()
    return views.render_room(room, user, post_url=room_url(".say"), leave_url=room_url(".leave"))


@bp.get("/room/messages")
def messages():
    """The events after lastReceived: at once from the archive, or when they
    come; [] after the timeout, or when the request's token expires."""
    room, user, after = admitted()
    chat = current_chat()
    timeout, left = chat.settings.longpoll_timeout, seconds_left()
    if left is not None:
        timeout = min(timeout, left)
    if user is not None:
        began = chat.presence.seen(room, user)
    poll = LongPoll(room, request.environ, user)
    OPEN_CONNECTIONS.labels(poll.transport).inc()
    try:
        chat.hub.attach(poll, after)
        try:
            poll.wait(timeout)
        finally:
            chat.hub.detach(poll)
    except ShuttingDown:
        poll.close()  # this process is stopping: the page polls again, elsewhere
    finally:
        OPEN_CONNECTIONS.labels(poll.transport).dec()
        if user is not None:
            chat.presence.poll_ended(room, user, began)
    return poll.response()
