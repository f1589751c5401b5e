"""The welcome page and the health check."""

from flask import Blueprint, jsonify, render_template

from .chat import current_chat
from .config import HEALTH_WAIT

bp = Blueprint("home", __name__)


@bp.get("/")
def index():
    return render_template("index.html")


@bp.get("/healthz")
def healthz():
    """200 while this process can post (Redis answers) and deliver (its
    subscription is up)."""
    chat = current_chat()
    if chat.hub.up(HEALTH_WAIT) and chat.rooms.healthy():
        return jsonify(status="ok")
    return jsonify(status="unavailable"), 503
