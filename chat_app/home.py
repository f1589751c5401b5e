"""The welcome page and the health check."""

from flask import Blueprint, jsonify, render_template

from .chat import current_chat

bp = Blueprint("home", __name__)


@bp.get("/")
def index():
    return render_template("index.html")


@bp.get("/healthz")
def healthz():
    if current_chat().rooms.healthy():
        return jsonify(status="ok")
    return jsonify(status="unavailable"), 503
