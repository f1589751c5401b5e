"""Active refresh: the page renders the archive and fetches it again every 5 s."""

import json
from datetime import datetime, timezone

from flask import Blueprint, redirect, render_template, request, url_for

from . import current_chat
from .events import parse_text, read_query

bp = Blueprint("refresh", __name__, url_prefix="/refresh")


@bp.get("")
def join():
    room, user, _ = read_query(request.environ)
    current_chat().enter_from_page(room, user)
    return redirect(url_for(".room", user=user, room=room), 302)


@bp.get("/room")
def room():
    room, user, _ = read_query(request.environ)
    chat = current_chat()
    events = [json.loads(raw) for _, raw in chat.rooms.history(room)]
    chat.presence.seen(room, user)
    return render_template(
        "refresh_room.html", room=room, user=user, events=events,
        transport="refresh", transport_name="active refresh",
        post_url=url_for(".say", user=user, room=room),
        leave_url=url_for(".leave", user=user, room=room),
        max_chars=chat.settings.max_message_chars)


@bp.app_template_filter("clock")
def clock(ts):
    """HH:MM (UTC) of a Unix time in ms; the page's script shows local time."""
    return datetime.fromtimestamp(ts / 1000, timezone.utc).strftime("%H:%M")


@bp.post("/room")
def say():
    room, user, _ = read_query(request.environ)
    chat = current_chat()
    text = parse_text(request.form.get("message"), chat.settings.max_message_chars)
    chat.rooms.post(room, "message", user, text)
    return redirect(url_for(".room", user=user, room=room), 303)


@bp.get("/room/leave")
def leave():
    room, user, _ = read_query(request.environ)
    current_chat().leave_from_page(room, user)
    return redirect(url_for("home.index"), 302)
