"""Active refresh: the page renders the archive and fetches it again every 5 s."""

import json
from datetime import datetime, timezone

from flask import Blueprint, redirect, request

from . import views
from .access import admitted, room_url
from .chat import current_chat
from .events import parse_text

bp = Blueprint("refresh", __name__, url_prefix="/refresh")
bp.add_url_rule("", "join", views.join)
bp.add_url_rule("/room/leave", "leave", views.leave)


@bp.get("/room")
def room():
    room, user, _ = admitted()
    chat = current_chat()
    events = [json.loads(raw) for _, raw in chat.rooms.history(room)]
    chat.presence.seen(room, user)
    return views.render_room(room, user, events=events, post_url=room_url(".say"),
                             leave_url=room_url(".leave"))


@bp.post("/room")
def say():
    """The page's plain HTML form: posts the message, then shows the page again (303)."""
    room, user, _ = admitted()
    chat = current_chat()
    text = parse_text(request.form.get("message"), chat.settings.max_message_chars)
    chat.rooms.post(room, "message", user, text)
    return redirect(room_url(".room"), 303)


@bp.app_template_filter("clock")
def clock(ts):
    """HH:MM (UTC) of a Unix time in ms; the page's script shows local time."""
    return datetime.fromtimestamp(ts / 1000, timezone.utc).strftime("%H:%M")
