"""The server API against real gunicorn servers sharing a real redis-server."""

import time

import requests

from tests.conftest import API_KEY, AUTH_KEY, token
from tests.servers import EventStream

KEY = {"Authorization": f"Bearer {API_KEY}"}
TOKEN_MODE = {"CHAT_AUTH_KEY": AUTH_KEY, "CHAT_API_KEY": API_KEY}


def api(server, method, path, body=None, headers=KEY):
    return requests.request(method, f"{server.url}/api{path}", json=body, headers=headers,
                            timeout=5)


def test_without_a_key_configured_the_api_is_not_there(shared_server, room_name):
    response = api(shared_server, "POST", f"/rooms/{room_name}/messages", {"user": "b", "text": "x"})
    assert response.status_code == 404 and "error" in response.json()


def test_messages_presence_and_refusals(redis_server, start_server, room_name):
    server = start_server(redis_server.url, CHAT_RATE_BURST=1, CHAT_RATE_PER_SEC=0.001, **TOKEN_MODE)
    path = f"/rooms/{room_name}/messages"
    for headers in ({}, {"Authorization": "Bearer wrong-key-0123456789"}):
        refused = api(server, "POST", path, {"user": "bot", "text": "hi"}, headers)
        assert refused.status_code == 401 and "error" in refused.json()
    metrics = requests.get(f"{server.url}/metrics", timeout=5).text
    assert 'chat_posts_refused_total{reason="auth"} 2.0' in metrics

    posted = [api(server, "POST", path, {"user": "bot", "text": f"notice {i}"}) for i in range(5)]
    assert [r.status_code for r in posted] == [201] * 5  # the API is not rate limited
    assert [r.json()["text"] for r in posted] == [f"notice {i}" for i in range(5)]
    assert api(server, "POST", path, {"user": "bot", "text": "x" * 2001}).status_code == 413
    assert api(server, "POST", path, {"user": "", "text": "x"}).status_code == 400

    sock = server.join(room_name, "ada", token=token("ada"))
    assert [e["text"] for e in sock.history[:5]] == [f"notice {i}" for i in range(5)]
    presence = api(server, "GET", f"/rooms/{room_name}/presence")
    assert presence.status_code == 200 and presence.json() == {"room": room_name, "users": ["ada"]}
    sock.close()


def test_disconnect_closes_the_users_sockets_and_streams_on_every_server_within_a_second(
        redis_server, start_server, room_name):
    servers = [start_server(redis_server.url, workers=2, **TOKEN_MODE) for _ in range(2)]
    sockets, streams = [], []
    for server in servers:  # ada on both servers, over both transports (the kernel spreads
        for _ in range(4):  # the connections over each server's two workers as it likes)
            sockets.append(server.join(room_name, "ada", token=token("ada")))
            stream = EventStream(server.port,
                                 f"/sse/room/events?room={room_name}&token={token('ada')}")
            stream.recv_until(lambda e: e["type"] == "join" and e["user"] == "ada")
            streams.append(stream)
    bob = servers[1].join(room_name, "bob", token=token("bob"))

    started = time.monotonic()
    response = api(servers[0], "POST", f"/rooms/{room_name}/disconnect", {"user": "ada"})
    assert response.status_code == 200
    assert response.json() == {"disconnected": len(sockets) + len(streams)}
    for sock in sockets:
        code, _ = sock.recv_close(timeout=1)
        assert code == 1008
    for stream in streams:
        stream.ended(timeout=1)
    assert time.monotonic() - started < 1.0
    # Nobody else was disconnected.

    said = requests.post(f"{servers[0].url}/longpolling/room/messages",
                         params={"room": room_name, "token": token("carl")},
                         data={"message": "still here, bob?"}, timeout=5)
    assert said.status_code == 201
    bob.recv_until(lambda e: e["type"] == "message" and e["text"] == "still here, bob?")
    bob.close()

