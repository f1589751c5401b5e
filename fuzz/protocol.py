"""A protocol fuzzer against a running server: mutated HTTP requests and WebSocket frames.

    python -m fuzz.protocol [--requests N] [--sockets N] [--seconds S] [--seed N]

Starts its own redis-server and gunicorn (two workers, on free ports of
127.0.0.1), sends mutations of a valid request of every route over raw
sockets, then opens valid WebSocket handshakes and sends mutated frames.
Every loop stops at its count or at the deadline. Then it checks: no answer
500 or 502; no worker died (same pids, no Traceback or killed worker in the
log); /healthz answers 200 and a normal post reaches a listener; and the
fuzzed rooms hold no message but those the fuzzer saw accepted (201; or as
many as POSTs answered 303 or not answered in time) or sent as a valid text
frame. Exits 1 on a failure. The servers' logs stay in a
temporary directory, /tmp/chat-fuzz-*, which the failures name.
"""

import argparse
import collections
import random
import re
import socket
import sys
import tempfile
import time
from pathlib import Path

import requests

from tests.servers import RedisServer, Server

from .frames import random_frames
from .mutate import mutate
from .seeds import HTTP_ROOM, WS_ROOM, handshake, http_seeds

READ_TIMEOUT = 0.5      # seconds to wait for an answer's bytes
FRAMES_WAIT = 0.1       # seconds to read what the server answers to the frames
API_KEY = "fuzz-api-key-0123456789"


def exchange(port, request, read_all):
    """Sends request on a new connection; the answer's bytes (its head alone
    unless read_all), b"" when none came."""
    with socket.create_connection(("127.0.0.1", port), timeout=READ_TIMEOUT) as sock:
        try:
            sock.sendall(request)
        except OSError:
            pass
        return receive(sock, read_all)


def receive(sock, read_all):
    answer = b""
    deadline = time.monotonic() + READ_TIMEOUT * 2
    while time.monotonic() < deadline and (read_all or b"\r\n" not in answer):
        try:
            chunk = sock.recv(65536)
        except OSError:
            break
        if not chunk:
            break
        answer += chunk
    return answer


def status_of(answer):
    """The answer's status code as text, or 'none' without a status line."""
    parts = answer.split(b"\r\n", 1)[0].split(b" ")
    return parts[1].decode("latin-1") if len(parts) > 1 and answer.startswith(b"HTTP/") else "none"


def posted_ids(answer):
    """The ids of the events in every 201 answer of a connection (a mutation may
    have made one request two)."""
    return {int(i) for i in re.findall(rb'\{"id":(\d+),"type":"message"', answer)}


class Run:
    """One fuzzing run's counts, failures, and what the server may have posted."""

    def __init__(self, server, rng, deadline):
        self.server, self.rng, self.deadline = server, rng, deadline
        self.statuses = collections.Counter()
        self.failures = []
        self.accepted_ids = set()   # events answered 201 in HTTP_ROOM
        self.unidentified_posts = 0  # POSTs that may have posted with no id seen: 303, no answer
        self.sent_texts = set()     # texts of valid text frames sent to WS_ROOM
        self.requests = self.sockets = 0

    def fuzz_http(self, count, deadline):
        seeds = http_seeds(self.server.port, API_KEY)
        while self.requests < count and time.monotonic() < deadline:
            seed = seeds[self.requests % len(seeds)]
            request = mutate(seed, self.rng) if self.rng.random() < 0.95 else seed
            answer = exchange(self.server.port, request, read_all=b"/events" not in request)
            self.record(request, answer)
            self.requests += 1

    def record(self, request, answer):
        status = status_of(answer)
        self.statuses[status] += 1
        if status in ("500", "502"):
            self.failures.append(f"{status} for {request[:300]!r}")
        self.accepted_ids |= posted_ids(answer)
        if b"POST" in request:  # answered 303 (the refresh form), 1xx or not in time
            self.unidentified_posts += answer.count(b"HTTP/1.1 303 ") + \
                (status == "none" or status.startswith("1"))

    def fuzz_websocket(self, count):
        while self.sockets < count and time.monotonic() < self.deadline:
            with socket.create_connection(("127.0.0.1", self.server.port),
                                          timeout=READ_TIMEOUT) as sock:
                sock.sendall(handshake(self.server.port, WS_ROOM))
                head = receive(sock, read_all=False)
                self.statuses[f"ws {status_of(head)}"] += 1
                data, texts = random_frames(self.rng)
                self.sent_texts |= texts
                try:
                    sock.sendall(data)
                except OSError:
                    pass
                sock.settimeout(FRAMES_WAIT)
                receive(sock, read_all=False)
            self.sockets += 1

    def check_rooms(self):
        """Only accepted posts and valid frames are in the fuzzed rooms' archives."""
        unaccounted = [event for event in self.server.archive(HTTP_ROOM) or []
                       if event["type"] == "message" and event["id"] not in self.accepted_ids]
        if len(unaccounted) > self.unidentified_posts:
            self.failures.append(f"{len(unaccounted)} messages posted without a 201, a 303 "
                                 f"or a timeout ({self.unidentified_posts}), "
                                 f"the first: {unaccounted[0]}")
        for event in self.server.archive(WS_ROOM) or []:
            if event["type"] == "message" and event["text"] not in self.sent_texts:
                self.failures.append(f"posted from no valid frame: {event}")


def check_server(server, pids, failures):
    """The workers, their log, /healthz, and a normal post reaching a listener."""
    if sorted(server.worker_pids()) != sorted(pids):
        failures.append(f"workers changed: {pids} -> {server.worker_pids()}")
    log = server.log()
    for sign in ("Traceback", "was sent"):
        if sign in log:
            failures.append(f"the log shows {sign!r}: see {server.log_path}")
    try:
        listener = server.join("after-fuzz", "checker")
        event = server.post("after-fuzz", "still here")
        received = listener.recv_until(lambda e: e["id"] == event["id"])
        listener.close()
        if requests.get(server.url + "/healthz", timeout=5).status_code != 200:
            failures.append("/healthz is not 200")
        assert received[-1]["text"] == "still here"
    except Exception as exc:  # any way the server fails to serve is a failure
        failures.append(f"the server no longer serves: {exc!r}")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000, help="HTTP requests (default 3000)")
    parser.add_argument("--sockets", type=int, default=1000, help="WebSockets (default 1000)")
    parser.add_argument("--seconds", type=float, default=150.0,
                        help="time budget; HTTP gets 2/3 of it (default 150)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(2 ** 32)
    workdir = Path(tempfile.mkdtemp(prefix="chat-fuzz-"))
    redis = RedisServer(workdir / "redis").start()
    server = Server(redis.url, workers=2, log_dir=workdir, CHAT_RATE_BURST=100000,
                    CHAT_RATE_PER_SEC=100000, CHAT_LONGPOLL_TIMEOUT=1, CHAT_API_KEY=API_KEY,
                    CHAT_ARCHIVE_SIZE=100000)
    try:
        server.start()
        pids = server.worker_pids()
        started = time.monotonic()
        run = Run(server, random.Random(seed), started + args.seconds)
        run.fuzz_http(args.requests, started + args.seconds * 2 / 3)
        run.fuzz_websocket(args.sockets)
        elapsed = time.monotonic() - started
        run.check_rooms()
        check_server(server, pids, run.failures)
    finally:
        server.stop()
        redis.stop()
    report(run, seed, elapsed)
    return 1 if run.failures else 0


def report(run, seed, elapsed):
    print(f"fuzz.protocol: seed {seed}, {run.requests} HTTP requests and {run.sockets} "
          f"WebSockets in {elapsed:.0f} s")
    print("answers by status:", ", ".join(f"{k}={v}" for k, v in sorted(run.statuses.items())))
    print(f"failures: {len(run.failures)}")
    for failure in run.failures[:20]:
        print("  " + failure)


if __name__ == "__main__":
    sys.exit(main())
