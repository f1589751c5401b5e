"""Who a request speaks as (access.py), on the Flask test client: every route of
a room in token mode refuses and admits as the contract says; open mode is unchanged."""

import dataclasses
import re
import socket
import time

import gevent
import pytest
from flask import g

from chat_app import create_app
from chat_app.access import close_at_expiry
from chat_app.auth import TOKEN_EXPIRED
from tests.conftest import token
from tests.servers import wait_until
from tests.tokens import ROOM_ROUTES, route_id
from tests.unit.test_stream import Reader, serve

HANDSHAKE = {"Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
             "Connection": "Upgrade", "Upgrade": "websocket"}

# Every route of a room, the WebSocket and the stream too: on the test client
# neither can get past admission (no socket to take; no gunicorn socket: 501).
ROUTES = ROOM_ROUTES + [("GET", "/websocket/room/socket", True, None),
                        ("GET", "/sse/room/events", True, 501)]
ROUTE_IDS = [route_id(route) for route in ROUTES]
ADMITTING = [route for route in ROUTES if route[3] is not None]

def refusals():
    """{case: (query, headers, status)}: what a request carries besides its room
    (room "a"), and the status it gets. Made when a test runs, as time goes on."""
    now = int(time.time())
    return {
        "no token": ({}, {}, 401),
        "garbage": ({"token": "garbage"}, {}, 401),
        "bad signature": ({"token": token("ada", key="x" * 32)}, {}, 401),
        "expired": ({"token": token("ada", exp=now - 1)}, {}, 401),
        "not yet valid": ({"token": token("ada", nbf=now + 60)}, {}, 401),
        "a malformed header": ({}, {"Authorization": "Bearer not.a.token"}, 401),
        "the token twice": ({"token": token("ada")}, {"Authorization": f"Bearer {token('ada')}"},
                            401),
        "room not allowed": ({"token": token("ada", rooms=["b"])}, {}, 403),
        "another user": ({"token": token("ada"), "user": "bob"}, {}, 403),
    }


def call(http, method, path, query, headers=None):
    query = {"room": "a", **query}
    headers = {**(headers or {}), **(HANDSHAKE if path.endswith("/socket") else {})}
    return http.open(path, method=method, query_string=query, headers=headers,
                     data={"message": "hi"} if method == "POST" else None)


def archive(app, room="a"):
    return app.extensions["chat"].rooms.history(room)


def refused_count(http):
    metrics = http.get("/metrics").get_data(as_text=True)
    return float(re.search(r'chat_posts_refused_total\{reason="auth"\} (\S+)', metrics).group(1))


@pytest.mark.parametrize("method, path, is_json, _", ROUTES, ids=ROUTE_IDS)
@pytest.mark.parametrize("case", list(refusals()))
def test_every_route_of_a_room_refuses_without_a_valid_token(
        token_app, token_http, method, path, is_json, _, case):
    query, headers, status = refusals()[case]
    before = refused_count(token_http)
    response = call(token_http, method, path, query, headers)
    assert response.status_code == status, response.get_data(as_text=True)
    if is_json:
        assert response.mimetype == "application/json" and "error" in response.json
    else:
        assert response.mimetype == "text/html" and f"Error {status}" in response.get_data(as_text=True)
    if status == 401:
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert archive(token_app) == []  # nothing posted
    assert refused_count(token_http) == before + 1


@pytest.mark.parametrize("method, path, is_json, admitted", ADMITTING,
                         ids=[route_id(route) for route in ADMITTING])
@pytest.mark.parametrize("how", ["parameter", "header", "parameter and user"])
def test_every_route_of_a_room_admits_the_tokens_user(token_app, token_http, method, path,
                                                      is_json, admitted, how):
    given = token("ada", rooms=["a"])
    query = {"token": given} if how != "header" else {}
    if how == "parameter and user":
        query["user"] = "ada"
    headers = {"Authorization": f"Bearer {given}"} if how == "header" else {}
    response = call(token_http, method, path, query, headers)
    assert response.status_code == admitted, response.get_data(as_text=True)
    assert all(b'"user":"ada"' in raw for _, raw in archive(token_app))


@pytest.mark.parametrize("path", ["/", "/healthz", "/metrics", "/static/chat.js"])
def test_the_welcome_page_health_metrics_and_static_files_need_no_token(token_http, path):
    assert token_http.get(path).status_code == 200


def test_pages_carry_their_token_in_their_links_and_form(token_http):
    given = token("ada")
    joined = token_http.get("/longpolling", query_string={"room": "a", "token": given})
    assert joined.headers["Location"] == f"/longpolling/room?user=ada&room=a&token={given}"
    page = token_http.get(joined.headers["Location"]).get_data(as_text=True)
    assert f'action="/longpolling/room/messages?user=ada&amp;room=a&amp;token={given}"' in page
    assert f'href="/longpolling/room/leave?user=ada&amp;room=a&amp;token={given}"' in page
    assert 'data-user="ada"' in page
    said = token_http.post("/refresh/room", query_string={"room": "a", "token": given},
                           data={"message": "hi"})
    assert said.headers["Location"] == f"/refresh/room?user=ada&room=a&token={given}"


def test_pages_keep_the_referer_to_this_origin(token_http):
    page = token_http.get("/websocket/room", query_string={"room": "a", "token": token("ada")})
    assert page.headers["Referrer-Policy"] in ("same-origin", "no-referrer")


def test_a_refused_page_is_readable_and_leads_back_to_the_start(token_http):
    page = token_http.get("/sse/room", query_string={"room": "a",
                                                     "token": token("ada", exp=1)})
    html = page.get_data(as_text=True)
    assert page.status_code == 401 and "the token has expired" in html
    assert "cannot start a new session" in html and 'href="/"' in html


def test_open_mode_ignores_a_token(app, http):
    response = http.get("/longpolling", query_string={"user": "ada", "room": "a", "token": "x"})
    assert response.headers["Location"] == "/longpolling/room?user=ada&room=a"
    assert http.get("/presence", query_string={"room": "a"}).status_code == 200


def test_a_long_poll_ends_when_its_token_expires(token_settings):
    app = create_app(dataclasses.replace(token_settings, longpoll_timeout=30))
    started = time.monotonic()
    response = app.test_client().get("/longpolling/room/messages", query_string={
        "room": "a", "token": token("ada", exp=int(time.time()) + 2)})
    assert response.json == [] and time.monotonic() - started < 4


def test_a_stream_ends_when_its_token_expires(token_app, token_http):
    server, browser = socket.socketpair()
    given = token("ada", exp=int(time.time()) + 2)
    request = gevent.spawn(serve, token_app, f"room=a&token={given}", {}, server)
    reader = Reader(browser)
    assert "200 OK" in reader.head()
    assert reader.events(1)[0]["type"] == "join"
    assert reader.ended(timeout=5)
    request.get(timeout=5)
    events = token_http.get("/longpolling/room/messages",
                            query_string={"room": "a", "token": token("ada")}).json
    assert [e["type"] for e in events] == ["join", "leave"]
    server.close()
    browser.close()


def test_a_websocket_closes_when_its_token_expires(token_app):
    """close_at_expiry, on a listener standing in for a WebSocket client."""
    class Listener:
        closed = None

        def close(self, code, reason=""):
            self.closed = (code, reason)

    listener, gone = Listener(), Listener()
    with token_app.test_request_context():
        g.expires = time.time() + 0.2
        close_at_expiry(listener)
        wait_until(lambda: listener.closed, timeout=2, message="the close at expiry")
        assert listener.closed == (1008, TOKEN_EXPIRED)
        g.expires = time.time() + 0.2
        close_at_expiry(gone).kill()  # a connection that ended before its token expired
        gevent.sleep(0.4)  # past the expiry: nothing may happen now
        assert gone.closed is None
