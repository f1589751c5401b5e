"""Server-sent events: the page, and posting from it (the stream comes next)."""

from flask import Blueprint, render_template, request, url_for

from . import current_chat
from .events import read_query
from .longpolling import say

bp = Blueprint("sse", __name__, url_prefix="/sse")


@bp.get("/room")
def room():
    room, user, _ = read_query(request.environ)
    return render_template(
        "sse_room.html", room=room, user=user,
        transport="sse", transport_name="server-sent events",
        post_url=url_for(".say", user=user, room=room),
        leave_url=url_for("home.index"),
        max_chars=current_chat().settings.max_message_chars)


bp.add_url_rule("/room/messages", "say", say, methods=["POST"])
