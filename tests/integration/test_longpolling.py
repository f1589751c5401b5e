"""Long polling against a real gunicorn: the hub writes waiting polls' answers itself."""

import json
import re
import socket

import gevent
import requests

from tests.servers import wait_until


def raw_poll(sock, port, room, after, close=False):
    """Sends one poll on a raw keep-alive socket; returns (status line, headers, body)."""
    sock.sendall((f"GET /longpolling/room/messages?room={room}&lastReceived={after} HTTP/1.1\r\n"
                  f"Host: 127.0.0.1:{port}\r\n" + ("Connection: close\r\n" if close else "") +
                  "\r\n").encode())
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    while len(body) < int(headers["Content-Length"]):
        body += sock.recv(65536)
    return lines[0], {k.lower(): v for k, v in headers.items()}, json.loads(body)


def polls_waiting(server):
    metrics = requests.get(f"{server.url}/metrics", timeout=5).text
    return re.search(r'^chat_open_connections\{transport="longpolling"\} (\S+)$', metrics, re.M).group(1)


def test_waiting_polls_get_a_whole_http_answer_and_stay_alive(shared_server, room_name):

    last = shared_server.post(room_name, "seen")["id"]
    with socket.create_connection(("127.0.0.1", shared_server.port), timeout=10) as sock:
        for text in ("first", "second"):  # twice on the same connection
            waiting = gevent.spawn(raw_poll, sock, shared_server.port, room_name, last)
            wait_until(lambda: polls_waiting(shared_server) == "1.0")
            event = shared_server.post(room_name, text)
            status, headers, body = waiting.get(timeout=10)
            assert status == "HTTP/1.1 200 OK" and body == [event]
            assert headers["content-type"] == "application/json"
            assert headers["x-content-type-options"] == "nosniff"
            assert "script-src 'self'" in headers["content-security-policy"]
            last = event["id"]
        waiting = gevent.spawn(raw_poll, sock, shared_server.port, room_name, last, close=True)
        wait_until(lambda: polls_waiting(shared_server) == "1.0")
        event = shared_server.post(room_name, "third")
        status, headers, body = waiting.get(timeout=10)
        assert status.endswith("200 OK") and body == [event] and headers["connection"] == "close"
