"""The chat's gunicorn worker (chat_app/worker.py) in a real gunicorn: how
long a connection may take to send its requests."""

import socket
import time

from chat_app.config import FIRST_REQUEST_WAIT

KEEPALIVE = 2  # gunicorn.conf.py's keepalive: seconds an idle kept-alive connection stays open
HEALTH_REQUEST = b"GET /healthz HTTP/1.1\r\nHost: chat\r\n\r\n"


def read_answer(sock):
    """One HTTP answer (head and Content-Length body) read off sock."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        assert chunk, f"closed before answering; read {data!r}"
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:")))
    while len(body) < length:
        body += sock.recv(4096)
    return head


def test_a_first_request_may_come_after_keepalive_but_an_idle_connection_is_closed(
        start_server):
    server = start_server()
    assert FIRST_REQUEST_WAIT > KEEPALIVE + 1
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        time.sleep(KEEPALIVE + 1)  # the request comes late: a busy client, or a busy worker
        sock.sendall(HEALTH_REQUEST)
        assert read_answer(sock).startswith(b"HTTP/1.1 200")
        idle_since = time.monotonic()
        assert sock.recv(1) == b""  # kept alive, then closed once idle for keepalive
        assert KEEPALIVE - 0.5 < time.monotonic() - idle_since < KEEPALIVE + 5
