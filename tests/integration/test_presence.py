"""Presence across real processes sharing a real redis-server."""

import os
import signal
import time

import requests
import websocket

from tests.servers import wait_until


def users(server, room):
    return requests.get(f"{server.url}/presence", params={"room": room}, timeout=5).json()["users"]


def test_presence_across_two_servers_and_expiry_after_sigkill(redis_server, start_server, room_name):
    a = start_server(redis_server.url, CHAT_PRESENCE_TTL=2)
    b = start_server(redis_server.url, CHAT_PRESENCE_TTL=2)
    on_a = a.join(room_name, "ada")
    on_b = b.join(room_name, "bob")
    assert users(a, room_name) == users(b, room_name) == ["ada", "bob"]
    os.killpg(a.process.pid, signal.SIGKILL)  # no clean-up: ada's entry must expire
    wait_until(lambda: users(b, room_name) == ["bob"], timeout=2 + 2, message="ada to expire")
    assert users(b, room_name) == ["bob"]
    on_b.close()
    wait_until(lambda: users(b, room_name) == [], timeout=3)
    on_a.close()


def test_two_tabs_on_a_server(redis_server, start_server, room_name):
    server = start_server(redis_server.url, workers=2)
    tabs = [server.join(room_name, "ada") for _ in range(2)]
    watcher = server.join(room_name, "watcher")
    tabs[0].close()
    watcher.recv_until(lambda e: e["type"] == "leave")
    assert users(server, room_name) == ["ada", "watcher"]  # still there in the other tab
    tabs[1].close()
    watcher.recv_until(lambda e: e["type"] == "leave")
    assert users(server, room_name) == ["watcher"]  # the last tab took ada away
    watcher.close()


def test_an_open_websocket_outlives_the_ttl(redis_server, start_server, room_name):
    server = start_server(redis_server.url, CHAT_PRESENCE_TTL=1.5)
    ws = websocket.create_connection(server.ws_url(user="ada", room=room_name), timeout=5)
    wait_until(lambda: users(server, room_name) == ["ada"])
    end = time.monotonic() + 3.5  # more than two TTLs: the process refreshes its sockets
    while time.monotonic() < end:
        assert users(server, room_name) == ["ada"]
    ws.close()
