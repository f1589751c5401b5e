"""The welcome page and the health check."""

from flask import Blueprint, current_app, jsonify, render_template

bp = Blueprint("home", __name__)


@bp.get("/")
def index():
    return render_template("index.html")


@bp.get("/healthz")
def healthz():
    chat = current_app.extensions["chat"]
    if chat.rooms.healthy() and chat.hub.healthy():
        return jsonify(status="ok")
    return jsonify(status="unavailable"), 503
