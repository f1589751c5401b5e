"""The WebSocket endpoint, against real gunicorn workers and a real redis-server."""

import json
import socket

import pytest
import requests
import websocket

from tests.servers import Socket


def test_page(shared_server):
    html = requests.get(f"{shared_server.url}/websocket/room?user=ada&room=x", timeout=5).text
    assert "websocket.js" in html and 'data-transport="websocket"' in html


def test_archive_replay_then_join_then_live_events(shared_server, room_name):
    old = [shared_server.post(room_name, f"old{i}") for i in range(3)]
    sock = shared_server.join(room_name, "ada")
    assert sock.history[:3] == old
    assert [e["type"] for e in sock.history] == ["message"] * 3 + ["join"]
    new = shared_server.post(room_name, "new")
    assert sock.recv() == new
    sock.close()


def test_last_received_replays_only_newer_events(shared_server, room_name):
    old = [shared_server.post(room_name, f"m{i}") for i in range(4)]
    sock = shared_server.join(room_name, "ada", lastReceived=old[1]["id"])
    assert [e["text"] for e in sock.history[:-1]] == ["m2", "m3"]
    sock.close()


def test_frames_become_messages_that_everyone_sees_including_the_sender(shared_server, room_name):
    ada = shared_server.join(room_name, "ada")
    bob = shared_server.join(room_name, "bob")
    ada.recv_until(lambda e: e["type"] == "join" and e["user"] == "bob")
    ada.send("  hello bob  ")
    for sock in (ada, bob):
        event = sock.recv()
        assert (event["type"], event["user"], event["text"]) == ("message", "ada", "hello bob")
    ada.close()
    bob.close()


def test_closing_posts_a_leave_event(shared_server, room_name):
    ada = shared_server.join(room_name, "ada")
    bob = shared_server.join(room_name, "bob")
    bob.close()
    left = ada.recv_until(lambda e: e["type"] == "leave")[-1]
    assert left["user"] == "bob"
    ada.close()


def test_every_transport_sees_every_other(shared_server, room_name):
    sock = shared_server.join(room_name, "ws-user")
    http = requests.Session()
    http.get(f"{shared_server.url}/refresh", params={"user": "refresh-user", "room": room_name})
    http.post(f"{shared_server.url}/refresh/room", params={"user": "refresh-user", "room": room_name},
              data={"message": "from refresh"})
    shared_server.post(room_name, "from long polling", user="lp-user")
    sock.send("from websocket")
    seen = sock.recv_until(lambda e: e["text"] == "from websocket")
    assert [e["text"] for e in seen if e["type"] == "message"] == [
        "from refresh", "from long polling", "from websocket"]
    polled = shared_server.archive(room_name)
    assert [e["text"] for e in polled if e["type"] == "message"] == [
        "from refresh", "from long polling", "from websocket"]
    page = http.get(f"{shared_server.url}/refresh/room",
                    params={"user": "refresh-user", "room": room_name}).text
    assert page.index("from refresh") < page.index("from long polling") < page.index("from websocket")
    sock.close()


def test_rooms_are_isolated(shared_server, room_name):
    a = shared_server.join(room_name + "a", "ada")
    b = shared_server.join(room_name + "b", "bob")
    shared_server.post(room_name + "a", "for a")
    shared_server.post(room_name + "b", "for b")
    assert a.recv()["text"] == "for a"
    assert b.recv()["text"] == "for b"
    a.close()
    b.close()


def handshake_status(url, **options):
    with pytest.raises(websocket.WebSocketBadStatusException) as info:
        websocket.create_connection(url, timeout=5, **options)
    return info.value.status_code, info.value.resp_body


@pytest.mark.parametrize("query", [{"room": "x"}, {"user": "", "room": "x"}, {"user": "a", "room": ""},
                                   {"user": "a", "room": "UP"}, {"user": "a", "lastReceived": "-1"},
                                   {"user": "x" * 33}, {"user": "a\x01"}])
def test_bad_names_refuse_the_handshake_with_400(shared_server, query):
    status, body = handshake_status(shared_server.ws_url(**query))
    assert status == 400 and "error" in json.loads(body)


def test_a_foreign_origin_is_refused_with_403(shared_server, room_name):
    url = shared_server.ws_url(user="ada", room=room_name)
    status, body = handshake_status(url, origin="http://evil.example")
    assert status == 403 and "error" in json.loads(body)
    same = Socket(url, origin=f"http://127.0.0.1:{shared_server.port}")  # this host and port
    same.close()
    Socket(url, suppress_origin=True).close()  # no Origin: not a browser
    assert handshake_status(url, origin="http://127.0.0.1:1")[0] == 403  # another port


def test_allowed_origins_setting(shared_redis, start_server, room_name):
    server = start_server(shared_redis.url, CHAT_ALLOWED_ORIGINS="https://chat.example, http://other:8080")
    url = server.ws_url(user="ada", room=room_name)
    Socket(url, origin="https://chat.example").close()
    Socket(url, origin="http://other:8080").close()
    assert handshake_status(url, origin="https://evil.example")[0] == 403


def test_permessage_deflate_is_refused(shared_server, room_name):
    ws = websocket.WebSocket()
    ws.connect(shared_server.ws_url(user="ada", room=room_name), timeout=5,
               header=["Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits"])
    assert "sec-websocket-extensions" not in {k.lower() for k in ws.getheaders()}
    ws.close()


def test_empty_frames_are_ignored_and_long_ones_close_with_1009(shared_server, room_name):
    ada = shared_server.join(room_name, "ada")
    ada.send("   ")
    ada.send("x" * 2000)
    assert ada.recv()["text"] == "x" * 2000  # the blank frame posted nothing
    ada.send("y" * 2001)
    code, events = ada.recv_close()
    assert code == 1009 and events == []
    polled = shared_server.archive(room_name)
    assert not any(e["text"].startswith("y") for e in polled)


def test_binary_frames_close_with_1003(shared_server, room_name):
    ada = shared_server.join(room_name, "ada")
    ada.ws.send_binary(b"\x00\x01")
    assert ada.recv_close()[0] == 1003


def test_rate_limit_sends_an_error_frame_and_posts_nothing(shared_redis, start_server, room_name):
    server = start_server(shared_redis.url, CHAT_RATE_BURST=3, CHAT_RATE_PER_SEC=0.01)
    ada = server.join(room_name, "ada")
    for i in range(4):
        ada.send(f"m{i}")
    got = [ada.recv() for _ in range(4)]  # the error frame may come before the echoes
    assert [e["text"] for e in got if e["type"] == "message"] == ["m0", "m1", "m2"]
    errors = [e for e in got if e["type"] == "error"]
    assert len(errors) == 1 and errors[0]["text"]
    # the limit is per user and room across transports and processes
    response = requests.post(f"{server.url}/longpolling/room/messages",
                             params={"user": "ada", "room": room_name}, data={"message": "m4"})
    assert response.status_code == 429


def test_huge_query_strings_are_refused_as_bad_names(shared_server):
    user = "x" * 7000  # the request line stays under gunicorn's 8190 bytes
    response = requests.get(f"{shared_server.url}/longpolling/room/messages",
                            params={"user": user}, timeout=5)
    assert response.status_code == 400 and "error" in response.json()
    page = requests.get(f"{shared_server.url}/refresh/room", params={"user": user}, timeout=5)
    assert page.status_code == 400 and "text/html" in page.headers["Content-Type"]
    status, body = handshake_status(shared_server.ws_url(user=user))
    assert status == 400 and "error" in json.loads(body)
    too_long = requests.get(f"{shared_server.url}/longpolling/room/messages",
                            params={"user": "x" * 9000}, timeout=5)
    assert too_long.status_code == 414  # gunicorn's own answer past its limit


def test_the_rate_limit_is_shared_by_every_process_and_transport(shared_redis, start_server, room_name):
    servers = [start_server(shared_redis.url, workers=2, CHAT_RATE_BURST=4, CHAT_RATE_PER_SEC=0.01)
               for _ in range(2)]
    sockets = [server.join(room_name, "ada") for server in servers]  # two connections, two servers
    sockets[0].send("1")
    sockets[0].recv_until(lambda e: e["text"] == "1")
    sockets[1].send("2")
    sockets[1].recv_until(lambda e: e["text"] == "2")
    for server in servers:  # new HTTP connections: any worker of either server
        assert server.try_post(room_name, f"via {server.port}", user="ada") is not None
    for sock in sockets:
        sock.send("one too many")
        refused = sock.recv_until(lambda e: e["type"] == "error")[-1]
        assert "too many" in refused["text"]
    for server in servers:
        response = requests.post(f"{server.url}/longpolling/room/messages",
                                 params={"user": "ada", "room": room_name}, data={"message": "no"},
                                 headers={"Connection": "close"}, timeout=5)
        assert response.status_code == 429
    texts = [e["text"] for e in servers[0].archive(room_name) if e["type"] == "message"]
    assert sorted(texts) == sorted(["1", "2", f"via {servers[0].port}", f"via {servers[1].port}"])
    for sock in sockets:
        sock.close()


@pytest.mark.parametrize("header", ["Host: 127.0.0.1:5\xb93", "Connection: clos\xed\xa0\x80e"])
def test_a_handshake_header_that_is_not_ascii_is_refused_with_400(shared_server, room_name, header):
    """wsproto reads these headers as ASCII: other bytes are a bad handshake, not a 500."""
    port = shared_server.port
    lines = [f"GET /websocket/room/socket?user=ana&room={room_name} HTTP/1.1",
             f"Host: 127.0.0.1:{port}", "Connection: Upgrade", "Upgrade: websocket",
             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13"]
    lines = [line for line in lines if not line.startswith("Host:") or "Host" not in header]
    lines.append(header)  # a second Connection header is joined to the first: "Upgrade,clos..."
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        assert sock.recv(4096).startswith(b"HTTP/1.1 400 ")


def test_a_handshake_without_host_is_refused_with_400(shared_server, room_name):
    """HTTP/1.1 requires a Host, and wsproto refuses a handshake without one: a 400, not a 500."""
    with socket.create_connection(("127.0.0.1", shared_server.port), timeout=5) as sock:
        sock.sendall(f"GET /websocket/room/socket?user=ana&room={room_name} HTTP/1.1\r\n"
                     "Connection: Upgrade\r\nUpgrade: websocket\r\n"
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n".encode())
        assert sock.recv(4096).startswith(b"HTTP/1.1 400 ")
