"""Token mode against real gunicorn workers and a real redis-server, with each
kind of key: an HS256 secret, an RSA (RS256) and an EC (ES256) key pair made here."""

import json
import os
import subprocess
import sys
import time

import jwt
import pytest
import redis
import requests
import websocket

from tests.conftest import AUTH_KEY
from tests.servers import PROJECT, EventStream, Server, Socket, wait_until
from tests.tokens import ROOM_ROUTES, families, hs256_by_hand, route_id, unsigned

FAMILIES = {family.name: family for family in families()}


@pytest.fixture(scope="module")
def servers(shared_redis, tmp_path_factory):
    """servers(family): one gunicorn (2 workers) in token mode with family's key, for the module."""
    started = {}

    def server(name):
        if name not in started:
            started[name] = Server(shared_redis.url, workers=2, CHAT_LONGPOLL_TIMEOUT=1,
                                   log_dir=tmp_path_factory.mktemp("logs"),
                                   **FAMILIES[name].env).start()
        return started[name]

    yield server
    for server in started.values():
        server.stop()


def refusals(family, room):
    """(what, query, headers, status): the ways a request of `room` is refused."""
    now = int(time.time())
    return [
        ("no token", {}, {}, 401),
        ("garbage", {"token": "garbage"}, {}, 401),
        ("alg none", {"token": unsigned({"sub": "ada"})}, {}, 401),
        ("HS256 with the public key", {"token": hs256_by_hand(family.public_pem or "x" * 32,
                                                              {"sub": "ada"})}, {}, 401),
        ("expired", {"token": family.sign("ada", exp=now - 1)}, {}, 401),
        ("not yet valid", {"token": family.sign("ada", nbf=now + 60)}, {}, 401),
        ("bad header", {}, {"Authorization": "Bearer x.y.z"}, 401),
        ("room not allowed", {"token": family.sign("ada", rooms=[room + "x"])}, {}, 403),
        ("another user", {"token": family.sign("ada"), "user": "bob"}, {}, 403),
    ]


def used_tokens(cases):
    """The JWTs among the refusals (the others are no secret)."""
    return [value for _, query, headers, _ in cases
            for value in [query.get("token"), headers.get("Authorization", "")[7:]]
            if value and value.startswith("eyJ")]


def archive(shared_redis, room):
    """The room's archive, read from Redis itself (a poll of an empty room would wait)."""
    client = redis.Redis.from_url(shared_redis.url)
    return [json.loads(raw) for raw in client.lrange(f"chat:{room}:archive", 0, -1)]


def closed_and_unlogged(server, connection, line, sessions, tokens):
    """Closes connection, waits for the server's `sessions`th session line, and
    checks that no line holds any of tokens."""
    connection.close()
    wait_until(lambda: server.log().count(line) >= sessions, message="the session lines")
    assert_no_token_logged(server, tokens)


def assert_no_token_logged(server, tokens):
    """Not a token, nor its claims, in any line the server wrote."""
    log = server.log()
    for token in tokens:
        assert token not in log and token.split(".")[1] not in log, "a token was logged"


@pytest.mark.parametrize("name", list(FAMILIES))
@pytest.mark.parametrize("method, path, is_json, admitted", ROOM_ROUTES,
                         ids=[route_id(r) for r in ROOM_ROUTES])
def test_each_route_refuses_then_admits_the_tokens_user(
        servers, shared_redis, room_name, name, method, path, is_json, admitted):
    server, family = servers(name), FAMILIES[name]
    cases = refusals(family, room_name)
    data = {"message": "hi"} if method == "POST" else None
    for what, query, headers, status in cases:
        response = requests.request(method, server.url + path, params={"room": room_name, **query},
                                    headers=headers, data=data, allow_redirects=False, timeout=5)
        assert response.status_code == status, (what, response.text)
        kind = "application/json" if is_json else "text/html"
        assert response.headers["Content-Type"].startswith(kind), what
    assert archive(shared_redis, room_name) == []  # nothing posted

    given = family.sign("ada", rooms=[room_name])
    header = {"Authorization": f"Bearer {given}"}
    for query, headers in [({"token": given}, {}), ({"user": "ada"}, header)]:
        response = requests.request(method, server.url + path, params={"room": room_name, **query},
                                    headers=headers, data=data, allow_redirects=False, timeout=5)
        assert response.status_code == admitted, response.text
    assert {e["user"] for e in archive(shared_redis, room_name)} <= {"ada"}
    assert_no_token_logged(server, used_tokens(cases) + [given])


@pytest.mark.parametrize("name", list(FAMILIES))
def test_the_websocket_handshake_is_refused_before_it_is_accepted(
        servers, shared_redis, room_name, name):
    server, family = servers(name), FAMILIES[name]
    cases = refusals(family, room_name)
    for what, query, headers, status in cases:
        url = server.ws_url(room=room_name, **query)
        with pytest.raises(websocket.WebSocketBadStatusException) as refused:
            websocket.create_connection(url, header=headers, timeout=5)
        assert refused.value.status_code == status, what
        assert "error" in json.loads(refused.value.resp_body), what
    assert archive(shared_redis, room_name) == []

    given = family.sign("ada", rooms=[room_name])
    sock = Socket(server.ws_url(room=room_name), header={"Authorization": f"Bearer {given}"})
    joined = sock.recv()
    assert (joined["type"], joined["user"]) == ("join", "ada")
    sock.send("hello")
    assert sock.recv()["user"] == "ada"
    sock.close()
    assert_no_token_logged(server, used_tokens(cases) + [given])


@pytest.mark.parametrize("name", list(FAMILIES))
def test_an_event_stream_is_refused_before_it_starts(servers, shared_redis, room_name, name):
    server, family = servers(name), FAMILIES[name]
    for what, query, headers, status in refusals(family, room_name):
        path = "/sse/room/events?" + "&".join(f"{k}={v}" for k, v in
                                                {"room": room_name, **query}.items())
        refused = EventStream(server.port, path, headers)
        assert (refused.status, "error" in refused.body) == (status, True), what
        refused.close()
    assert archive(shared_redis, room_name) == []


def test_a_websocket_is_closed_at_expiry_and_resumes_with_a_fresh_token(
        servers, shared_redis, room_name):
    server, family = servers("RS256"), FAMILIES["RS256"]
    sessions = server.log().count("websocket closed")
    poster = family.sign("bob")
    first = family.expiring("ada", 2)
    ada = server.join(room_name, "ada", token=first)
    before = server_post(server, room_name, "before the expiry", poster)
    assert ada.recv() == before
    code, seen = ada.recv_close(timeout=5)
    assert (code, ada.close_reason, seen) == (1008, "token expired", [])
    wait_until(lambda: archive(shared_redis, room_name)[-1]["type"] == "leave",
               message="ada's leave")
    missed = [server_post(server, room_name, f"missed {i}", poster) for i in range(3)]

    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        websocket.create_connection(server.ws_url(room=room_name, token=first), timeout=5)
    assert refused.value.status_code == 401  # the old token is good no more
    second = family.expiring("ada", 60)
    again = server.join(room_name, "ada", token=second, lastReceived=before["id"])
    messages = [e for e in again.history if e["type"] == "message"]
    assert messages == missed  # every one, once
    assert [e["type"] for e in again.history] == ["leave"] + ["message"] * 3 + ["join"]
    closed_and_unlogged(server, again, "websocket closed", sessions + 2, [first, second, poster])


def test_an_event_stream_ends_at_expiry_and_resumes_with_a_fresh_token(servers, room_name):
    server, family = servers("ES256"), FAMILIES["ES256"]
    sessions = server.log().count("sse closed")
    poster = family.sign("bob")
    first = family.expiring("ada", 2)
    stream = EventStream(server.port, f"/sse/room/events?room={room_name}",
                         {"Authorization": f"Bearer {first}"})
    assert stream.recv()["type"] == "join"
    before = server_post(server, room_name, "before the expiry", poster)
    started = time.monotonic()
    assert stream.ended(timeout=5) == [before]
    assert time.monotonic() - started < 3
    missed = [server_post(server, room_name, f"missed {i}", poster) for i in range(2)]

    stale = EventStream(server.port, f"/sse/room/events?room={room_name}&token={first}",
                        {"Last-Event-ID": before["id"]})
    assert stale.status == 401  # what the page's EventSource gets when it reconnects
    second = family.expiring("ada", 60)
    again = EventStream(server.port, f"/sse/room/events?room={room_name}&token={second}",
                        {"Last-Event-ID": before["id"]})
    got = again.recv_until(lambda e: e["type"] == "join")
    assert [e for e in got if e["type"] == "message"] == missed
    closed_and_unlogged(server, again, "sse closed", sessions + 2, [first, second, poster])


def test_pages_keep_the_referer_to_their_own_origin(servers, room_name):
    server, family = servers("HS256"), FAMILIES["HS256"]
    page = requests.get(f"{server.url}/websocket/room",
                        params={"room": room_name, "token": family.sign("ada")}, timeout=5)
    assert page.headers["Referrer-Policy"] in ("same-origin", "no-referrer")


def test_the_token_command_prints_a_token_the_server_admits(servers, room_name):
    flask = os.path.join(os.path.dirname(sys.executable), "flask")
    env = {**os.environ, "CHAT_AUTH_KEY": AUTH_KEY}
    env.pop("REDIS_URL", None)
    out = subprocess.run([flask, "--app", "wsgi", "chat", "token", "ada", "--rooms",
                          f"{room_name},other", "--ttl", "60"], cwd=PROJECT, env=env,
                         capture_output=True, text=True, timeout=60, check=True).stdout.strip()
    assert jwt.decode(out, AUTH_KEY, algorithms=["HS256"])["rooms"] == [room_name, "other"]
    server = servers("HS256")
    sock = server.join(room_name, "ada", token=out)
    assert sock.history[-1]["user"] == "ada"
    sock.close()


def server_post(server, room, text, token):
    response = requests.post(f"{server.url}/longpolling/room/messages",
                             params={"room": room, "token": token}, data={"message": text},
                             timeout=5)
    assert response.status_code == 201, response.text
    return response.json()



def test_the_keys_are_checked_before_the_workers_patch_ssl(servers):
    """gunicorn's master reads the settings (the key too) before its workers
    apply gevent's monkey patch: nothing it imports may have imported ssl's names."""
    assert "MonkeyPatchWarning" not in servers("RS256").log()
