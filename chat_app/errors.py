"""Every error a user can see: JSON on API routes, a readable page elsewhere.

Nothing here shows a stack trace; unexpected errors are logged and answered
500. The security headers of every response are set here too.
"""

import logging

from flask import jsonify, make_response, render_template, request
from flask.globals import request_ctx
from werkzeug.exceptions import HTTPException

from .config import SECURITY_HEADERS
from .exceptions import AuthRefused, Invalid, RateLimited, ShuttingDown, StoreUnavailable
from .metrics import POSTS_REFUSED

log = logging.getLogger(__name__)

API_PATHS = frozenset({
    "/longpolling/room/messages",
    "/sse/room/messages",
    "/sse/room/events",
    "/websocket/room/socket",
    "/healthz",
    "/presence",
    "/metrics",
})
API_PREFIX = "/api/"  # the server API (api.py): every path under it is an API route

# Routes that post an event: their refusals count as refused posts.
POSTING_ENDPOINTS = frozenset({
    "refresh.join", "refresh.say", "refresh.leave", "longpolling.join", "longpolling.say",
    "longpolling.leave", "websocket.socket", "sse.say", "sse.events",
})

def error_response(status, message):
    """JSON on API routes; elsewhere a page, linking back to the form that was posted."""
    if request.path in API_PATHS or request.path.startswith(API_PREFIX) or not _has_urls():
        response = jsonify(error=message)
    else:
        back = request.full_path.rstrip("?") if request.method == "POST" else None
        response = render_template("error.html", status=status, message=message, back=back)
    return response, status


def _has_urls():
    """Whether the page could link anywhere: not for a Host no URL can be built for."""
    return request_ctx.url_adapter is not None


def init_app(app):
    @app.errorhandler(Invalid)
    def invalid(exc):
        if request.endpoint in POSTING_ENDPOINTS:
            POSTS_REFUSED.labels("validation").inc()
        return error_response(exc.status, exc.message)

    @app.errorhandler(AuthRefused)
    def auth_refused(exc):
        POSTS_REFUSED.labels("auth").inc()
        response = make_response(error_response(exc.status, exc.message))
        if exc.status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="chat"'
        return response

    @app.errorhandler(RateLimited)
    def rate_limited(exc):
        return error_response(429, "too many messages: wait a moment and try again")

    @app.errorhandler(StoreUnavailable)
    def store_unavailable(exc):
        log.warning("redis unavailable: %s", exc)
        return error_response(503, "the chat store is unavailable; nothing was posted")

    @app.errorhandler(ShuttingDown)
    def shutting_down(exc):
        return error_response(503, "this server is restarting; try again")

    @app.errorhandler(HTTPException)
    def http_error(exc):
        if request.endpoint in POSTING_ENDPOINTS and exc.code in (400, 413):
            POSTS_REFUSED.labels("validation").inc()
        return error_response(exc.code, exc.description or exc.name)

    @app.errorhandler(Exception)
    def unexpected(exc):
        log.exception("unexpected error on %s %s", request.method, request.path)
        return error_response(500, "internal error")

    @app.after_request
    def security_headers(response):
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response
