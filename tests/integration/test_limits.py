"""A real gunicorn runs with the open-file limit, connections per worker and
listen backlog its settings ask for (and its workers' collector as
GC_THRESHOLDS sets it), a WebSocket holds one descriptor once its request
has ended, and a full worker leaves a new connection waiting in the listen
queue instead of failing it."""

import re
import socket
import subprocess
from pathlib import Path

import pytest


FILES = 300       # CHAT_OPEN_FILES: 300 - FILES_RESERVED (256) = 44 connections
CONNECTIONS = 44


def open_files(pid):
    """The soft 'Max open files' of a process, from /proc."""
    line = next(line for line in Path(f"/proc/{pid}/limits").read_text().splitlines()
                if line.startswith("Max open files"))
    return int(line.split()[3])


def listen_backlog(port):
    """The backlog of the socket listening on port, as ss shows it (Send-Q)."""
    out = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True,
                         check=True).stdout
    return int(out.split()[2])


def descriptors_of_connections(port, pid):
    """How many file descriptors of process pid hold connections accepted on
    port (ss lists every descriptor of a socket: a dup'ed one twice)."""
    out = subprocess.run(["ss", "-Htnp", "state", "established", f"sport = :{port}"],
                         capture_output=True, text=True, check=True).stdout
    return len(re.findall(rf"pid={pid},fd=\d+", out))


def upgrade_request(port, room, user):
    """A connected socket that has sent a WebSocket handshake and read nothing yet."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall((f"GET /websocket/room/socket?room={room}&user={user} HTTP/1.1\r\n"
                  f"Host: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
                  ).encode())
    return sock


def test_settings_set_the_files_the_connections_and_the_backlog(redis_server, start_server,
                                                                room_name):
    server = start_server(redis_server.url, workers=1, CHAT_OPEN_FILES=FILES,
                          CHAT_WORKER_CONNECTIONS=100000, CHAT_BACKLOG=64)
    [worker] = server.worker_pids()
    assert open_files(worker) == FILES
    assert listen_backlog(server.port) == 64
    log = server.log()
    assert re.search(rf"open files {FILES}, worker_connections {CONNECTIONS}, backlog 64", log)
    assert f"worker_connections 100000 is capped at {CONNECTIONS}" in log
    assert re.search(r"collector: \d+ start-up objects frozen, thresholds \(10000, 20, 10\)", log)

    sockets = [server.join(room_name, f"u{i}") for i in range(CONNECTIONS)]
    assert descriptors_of_connections(server.port, worker) == CONNECTIONS  # one each
    waiting = upgrade_request(server.port, room_name, "late")
    waiting.settimeout(1.0)
    with pytest.raises(TimeoutError):  # queued, unanswered: the full worker stopped accepting
        waiting.recv(1)
    sockets.pop().close()
    waiting.settimeout(10)
    assert waiting.recv(12) == b"HTTP/1.1 101"
    waiting.close()
    for sock in sockets:
        sock.close()
