"""The views the transports' blueprints share: join, leave, the room page, posting.

Each is registered on every blueprint that offers it, so `url_for(".room")`
names the room page of the transport being used.
"""

from flask import Response, redirect, render_template, request, url_for

from .access import admitted, room_url
from .chat import current_chat
from .events import parse_text
from .exceptions import Invalid

TRANSPORT_NAMES = {
    "refresh": "active refresh",
    "longpolling": "long polling",
    "websocket": "WebSocket",
    "sse": "server-sent events",
}


def join():
    """GET /<transport>?user=U&room=R: posts U's join, then shows the room page."""
    room, user, _ = admitted()
    current_chat().enter_from_page(room, user)
    return redirect(room_url(".room"), 302)


def leave():
    """GET /<transport>/room/leave?user=U&room=R: posts U's leave, then the welcome page."""
    room, user, _ = admitted()
    current_chat().leave_from_page(room, user)
    return redirect(url_for("home.index"), 302)


def render_room(room, user, post_url, leave_url, **context):
    """The room page of the request's transport (templates/<transport>_room.html)."""
    transport = request.blueprint
    return render_template(
        f"{transport}_room.html", room=room, user=user, transport=transport,
        transport_name=TRANSPORT_NAMES[transport], post_url=post_url, leave_url=leave_url,
        max_chars=current_chat().settings.max_message_chars, **context)


def post_message():
    """POST /<transport>/room/messages?user=U&room=R: 201 with the event posted.

    The message is the form field `message`, or a JSON object's `message`.
    """
    room, user, _ = admitted()
    chat = current_chat()
    text = parse_text(_message_field(), chat.settings.max_message_chars)
    return created(chat.rooms.post(room, "message", user, text))


def created(event):
    """201 with a posted event's JSON."""
    return Response(event, status=201, mimetype="application/json")


def _message_field():
    if request.is_json:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise Invalid('the body must be a JSON object like {"message": "..."}')
        return body.get("message")
    return request.form.get("message")
