"""The server API (api.py) on the Flask test client."""

import dataclasses

import pytest

from chat_app import create_app
from chat_app.config import Settings
from tests.conftest import API_KEY, token

KEY = {"Authorization": f"Bearer {API_KEY}"}
ROUTES = [("POST", "/api/rooms/a/messages", {"user": "bot", "text": "hi"}),
          ("POST", "/api/rooms/a/disconnect", {"user": "ada"}),
          ("GET", "/api/rooms/a/presence", None)]


def call(http, method, path, body=None, headers=KEY):
    return http.open(path, method=method, json=body, headers=headers)


def archive(app, room="a"):
    return app.extensions["chat"].rooms.history(room)


@pytest.mark.parametrize("method, path, body", ROUTES)
def test_without_an_api_key_configured_the_routes_are_not_there(http, method, path, body):
    response = call(http, method, path, body)
    assert response.status_code == 404 and "error" in response.json


@pytest.mark.parametrize("method, path, body", ROUTES)
@pytest.mark.parametrize("headers", [
    {}, {"Authorization": "Bearer wrong-key-0123456789"}, {"Authorization": f"Basic {API_KEY}"},
    {"Authorization": f"Bearer {API_KEY}x"}, {"Authorization": f"Bearer {token('ada')}"},
], ids=["none", "wrong", "another scheme", "longer", "a user token"])
def test_a_missing_or_wrong_key_is_401(token_app, token_http, method, path, body, headers):
    response = call(token_http, method, path, body, headers)
    assert response.status_code == 401 and "API key" in response.json["error"]
    assert archive(token_app) == []


def test_a_message_is_posted_as_the_user_with_201(token_app, token_http):
    response = call(token_http, "POST", "/api/rooms/a/messages", {"user": " bot ", "text": " hi "})
    assert response.status_code == 201 and response.mimetype == "application/json"
    event = response.json
    assert (event["type"], event["room"], event["user"], event["text"]) == ("message", "a", "bot", "hi")
    assert [raw for _, raw in archive(token_app)] == [response.get_data()]


def test_api_messages_are_not_rate_limited(token_settings):
    app = create_app(dataclasses.replace(token_settings, rate_burst=1, rate_per_sec=0.001))
    http = app.test_client()
    for i in range(5):
        assert call(http, "POST", "/api/rooms/a/messages", {"user": "bot", "text": str(i)}) \
            .status_code == 201
    by_page = {"room": "a", "token": token("bot")}
    for expected in (201, 429):  # the bot's own bucket is untouched by the API: full
        assert http.post("/longpolling/room/messages", query_string=by_page,
                         data={"message": "x"}).status_code == expected


@pytest.mark.parametrize("path, body, status", [
    ("/api/rooms/Bad!/messages", {"user": "bot", "text": "hi"}, 400),
    ("/api/rooms/a/messages", {"text": "hi"}, 400),
    ("/api/rooms/a/messages", {"user": "", "text": "hi"}, 400),
    ("/api/rooms/a/messages", {"user": 7, "text": "hi"}, 400),
    ("/api/rooms/a/messages", {"user": "bot"}, 400),
    ("/api/rooms/a/messages", {"user": "bot", "text": "   "}, 400),
    ("/api/rooms/a/messages", {"user": "bot", "text": ["hi"]}, 400),
    ("/api/rooms/a/messages", ["bot", "hi"], 400),
    ("/api/rooms/a/messages", {"user": "bot", "text": "x" * 2001}, 413),
    ("/api/rooms/a/disconnect", {}, 400),
    ("/api/rooms/a/disconnect", {"user": "a\x00"}, 400),
])
def test_names_text_and_size_rules_apply(token_app, token_http, path, body, status):
    response = call(token_http, "POST", path, body)
    assert response.status_code == status and "error" in response.json
    assert archive(token_app) == []


def test_a_body_that_is_not_json_is_400(token_http):
    response = token_http.post("/api/rooms/a/messages", data="user=bot", headers=KEY)
    assert response.status_code == 400 and "JSON object" in response.json["error"]


def test_presence_is_the_rooms_without_a_user_token(token_app, token_http):
    token_http.get("/refresh", query_string={"room": "a", "token": token("ada")})
    response = call(token_http, "GET", "/api/rooms/a/presence")
    assert response.status_code == 200 and response.json == {"room": "a", "users": ["ada"]}


def test_the_api_works_in_open_mode_too():
    app = create_app(Settings(secret_key="t", api_key=API_KEY))
    http = app.test_client()
    assert call(http, "POST", "/api/rooms/a/messages", {"user": "bot", "text": "hi"}) \
        .status_code == 201
    assert call(http, "GET", "/api/rooms/a/presence").json == {"room": "a", "users": []}


class Listener:
    """Stands in for a WebSocket client of the hub."""

    transport = "websocket"

    def __init__(self, room, user):
        self.room, self.user, self.closed = room, user, None

    def deliver(self, batch):
        return len(batch)

    def ping(self):
        pass

    def close(self, code, reason=""):
        self.closed = (code, reason)


def test_disconnect_closes_the_users_connections_with_1008_and_counts_them(token_app, token_http):
    hub = token_app.extensions["chat"].hub
    ada, ada_too, bob = Listener("a", "ada"), Listener("a", "ada"), Listener("a", "bob")
    elsewhere = Listener("b", "ada")
    for listener in (ada, ada_too, bob, elsewhere):
        hub.attach(listener, 0)
    response = call(token_http, "POST", "/api/rooms/a/disconnect", {"user": "ada"})
    assert response.status_code == 200 and response.json == {"disconnected": 2}
    assert ada.closed == ada_too.closed == (1008, "disconnected by the server")
    assert bob.closed is None and elsewhere.closed is None
    hub.stop()


def test_disconnect_while_the_store_is_down_is_503(token_app, token_http, monkeypatch):
    from chat_app.exceptions import StoreUnavailable

    def down(room, user):
        raise StoreUnavailable("redis went away")

    monkeypatch.setattr(token_app.extensions["chat"].control, "disconnect", down)
    response = call(token_http, "POST", "/api/rooms/a/disconnect", {"user": "ada"})
    assert response.status_code == 503 and "error" in response.json
