"""Who a request speaks as, and in which room: decided in one place, before any view.

A before_request hook admits every request of a room's route (every endpoint
but the open ones and the server API, which checks its own key: api.py). It
reads the query and leaves the room, the user and lastReceived in flask.g,
where the views take them (`admitted()`):

- open mode: the user is the `user` parameter, taken on trust;
- token mode: the user is the token's `sub` (auth.py). The token comes in the
  Authorization header or the `token` parameter; a `user` parameter may be
  left out, and when given must be `sub`. No valid token: 401; a room the
  token does not allow, or another user: 403.

So a view cannot forget to check: an endpoint is admitted unless it is listed
as open here.
"""

import time

import gevent
from flask import g, request, url_for

from .auth import TOKEN_EXPIRED, request_token
from .chat import current_chat
from .events import parse_query, query_names

# Endpoints anyone may call: the welcome page, the health check, metrics, static files.
OPEN_ENDPOINTS = frozenset({"home.index", "home.healthz", "metrics.metrics", "static"})
# Endpoints where a user is optional in open mode (in token mode the token names one).
USER_OPTIONAL = frozenset({"longpolling.messages", "presence.presence"})


def init_app(app):
    app.before_request(admit)


def admit():
    """Admits the request to its room (g.room, g.user, g.after), or raises
    Invalid (400) or AuthRefused (401, 403)."""
    if request.endpoint is None or request.endpoint in OPEN_ENDPOINTS \
            or request.blueprint == "api":
        return  # no such route (404, 405), an open one, or the server API
    params = parse_query(request.environ.get("QUERY_STRING", ""))
    verifier = current_chat().verifier
    user_required = verifier is None and request.endpoint not in USER_OPTIONAL
    g.room, user, g.after = query_names(params, user_required)
    g.token = g.expires = None
    if verifier is None:
        g.user = user
        return
    g.token = request_token(request.headers.get("Authorization"), params.get("token"))
    identity = verifier.decode(g.token)
    g.user, g.expires = identity.admit(g.room, user), identity.expires


def admitted():
    """(room, user, lastReceived) of the admitted request; user may be None
    where it is optional (USER_OPTIONAL) in open mode."""
    return g.room, g.user, g.after


def room_url(endpoint):
    """endpoint's URL for the admitted room and user, carrying the request's
    token in token mode (so a page's links and form keep it)."""
    values = {"user": g.user, "room": g.room}
    if g.token:
        values["token"] = g.token
    return url_for(endpoint, **values)


def seconds_left():
    """Seconds until the request's token expires; None if it never does (or open mode)."""
    if g.expires is None:
        return None
    return max(0.0, g.expires - time.time())


def close_at_expiry(listener):
    """Closes listener (a WebSocket or a stream) when the request's token
    expires: 1008 "token expired". Returns the timer, for the caller to kill
    when the connection ends, or None when the token does not expire."""
    left = seconds_left()
    if left is None:
        return None
    return gevent.spawn_later(left, listener.close, 1008, TOKEN_EXPIRED)
