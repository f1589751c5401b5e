"""Long polling: the page asks for the events after the last one it has."""

from flask import Blueprint, request, url_for

from . import views
from .chat import current_chat
from .events import read_query
from .exceptions import ShuttingDown
from .longpoll import LongPoll
from .metrics import OPEN_CONNECTIONS

bp = Blueprint("longpolling", __name__, url_prefix="/longpolling")
bp.add_url_rule("", "join", views.join)
bp.add_url_rule("/room/leave", "leave", views.leave)
bp.add_url_rule("/room/messages", "say", views.post_message, methods=["POST"])


@bp.get("/room")
def room():
    room, user, _ = read_query(request.environ)
    return views.render_room(
        room, user,
        post_url=url_for(".say", user=user, room=room),
        leave_url=url_for(".leave", user=user, room=room))


@bp.get("/room/messages")
def messages():
    """The events after lastReceived: at once from the archive, or when they come."""
    room, user, after = read_query(request.environ, user_required=False)
    chat = current_chat()
    if user is not None:
        began = chat.presence.seen(room, user)
    poll = LongPoll(room, request.environ, user)
    OPEN_CONNECTIONS.labels(poll.transport).inc()
    try:
        chat.hub.attach(poll, after)
        try:
            poll.wait(chat.settings.longpoll_timeout)
        finally:
            chat.hub.detach(poll)
    except ShuttingDown:
        poll.close()  # this process is stopping: the page polls again, elsewhere
    finally:
        OPEN_CONNECTIONS.labels(poll.transport).dec()
        if user is not None:
            chat.presence.poll_ended(room, user, began)
    return poll.response()
