"""Scenario `archive`: what reading the events near the newest costs as the archive grows.

For each archive size (CHAT_ARCHIVE_SIZE) a redis-server and one gunicorn
worker of its own, all started at once; each room is full and has one idle
WebSocket (the anchor: the worker stays subscribed, as in a room with
listeners, so no request waits for a SUBSCRIBE). One request at a time
(latency without queueing), the sizes in turns, so that whatever else the
machine runs weighs on every size alike:

- long polls whose lastReceived is the id FEW events before the newest: each
  is answered at once with those FEW events;
- WebSocket resumes whose lastReceived is FEW - 1 events before the newest
  the client has seen: each is replayed FEW archived events (the last one
  the previous resume's leave), then gets its own join, and closes (its
  leave is posted).

Server CPU (utime+stime of the gunicorn tree, /proc) and Redis CPU
(`INFO cpu`) over each series are divided by its requests. Latency is from
the request (the connect, for a resume) to its answer, or to a resume's
replay: its own join comes later, paced by CHAT_FANOUT_INTERVAL. A server
that reads only what it returns costs the same at every size: `flat` says
whether the sizes' medians are within FLAT_RATIO of each other.
"""

import http.client
import json
import socket
import statistics
import sys
import threading
import time

from chat_app.config import Settings
from chat_app.room import Rooms

from .client import handshake

ARCHIVE_SIZES = (100, 1_000, 10_000)  # CHAT_ARCHIVE_SIZE of each server, in turn
ROOM = "archive"                 # the room filled and read
FEW = 5                          # events each request gets back from the archive
WARM_UP = 20                     # requests of each kind before the measured ones (scripts loaded)
TEXT = "an archived message, about as long as a line of chat: " * 2  # each filler's text
SETTLE_S = 0.2                   # after a series, time for the last leave to be posted before sampling
RECV_BYTES = 65536               # one read of a resume's socket
TEXT_OPCODE = 0x1                # a WebSocket text frame (events; pings are skipped)
TIMEOUT_S = 10.0                 # a request that takes longer fails the scenario
FLAT_RATIO = 1.5                 # flat: max/min over the sizes' medians, for each figure of FLAT_FIGURES
FLAT_FIGURES = ("srv_cpu_ms", "redis_cpu_ms", "latency_p50_ms")  # the figures `flat` compares


def resume_costs(servers, requests):
    """servers: {size: Servers}. Fills each room, then measures `requests` long polls
    and resumes per size: {size: {"lp": figures, "ws": figures}}."""
    rooms = {size: FullRoom(s, size) for size, s in servers.items()}
    try:
        figures = {"lp": series(servers, {size: r.polls.one for size, r in rooms.items()}, requests),
                   "ws": series(servers, {size: r.resumes.one for size, r in rooms.items()}, requests)}
    finally:
        for room in rooms.values():
            room.close()
    for kind, by_size in figures.items():
        for size, f in by_size.items():
            print(f"  archive {size:,}, {kind}: server {f['srv_cpu_ms']:.3f} ms CPU, redis "
                  f"{f['redis_cpu_ms']:.3f} ms CPU per request, p50 {f['latency_p50_ms']:.2f} ms, "
                  f"{f['events_mean']:.1f} events each", file=sys.stderr, flush=True)
    return {str(size): {kind: figures[kind][size] for kind in figures} for size in servers}


class FullRoom:
    """A room filled to its server's archive size, with an anchor and the measuring clients."""

    def __init__(self, servers, size):
        rooms = Rooms(servers.redis.client, Settings(archive_size=size))
        for _ in range(size):
            newest = rooms.post(ROOM, "message", "filler", TEXT, limited=False)
        self.anchor = Anchor(servers.port, json.loads(newest)["id"])
        tail = [eid for eid, _ in rooms.history(ROOM)][-FEW - 1:]
        self.polls = LongPolls(servers.port, tail[0])
        self.resumes = Resumes(servers.port, tail)

    def close(self):
        self.polls.close()
        self.anchor.close()


def series(servers, requests_of, requests):
    """Times `requests` calls of each size's requests_of[size]() (after WARM_UP each), in
    turns, so that what else the machine runs meanwhile weighs on every size alike."""
    for _ in range(WARM_UP):
        for one in requests_of.values():
            one()
    before = {size: cpu_of(s) for size, s in servers.items()}
    timed = {size: [] for size in servers}
    for _ in range(requests):
        for size, one in requests_of.items():
            timed[size].append(one())
    time.sleep(SETTLE_S)
    return {size: figures(before[size], cpu_of(s), timed[size]) for size, s in servers.items()}


def figures(before, after, timed):
    """Figures per request from (server, Redis) CPU before and after, and the (ns, events) of each."""
    latencies = sorted(ns / 1e6 for ns, _ in timed)
    return {"requests": len(timed), "srv_cpu_ms": (after[0] - before[0]) * 1e3 / len(timed),
            "redis_cpu_ms": (after[1] - before[1]) * 1e3 / len(timed),
            "latency_p50_ms": statistics.median(latencies), "latency_max_ms": latencies[-1],
            "events_mean": statistics.mean(events for _, events in timed)}


def cpu_of(servers):
    """(gunicorn tree's CPU seconds from /proc, Redis's from INFO) so far."""
    return servers.tree.sample()[0], redis_cpu(servers.redis.client)


def redis_cpu(client):
    """Redis's CPU seconds so far (user + system, `INFO cpu`)."""
    info = client.info("cpu")
    return info["used_cpu_user"] + info["used_cpu_sys"]


class Anchor:
    """An idle WebSocket in the room; a thread reads and drops whatever it is sent."""

    def __init__(self, port, after):
        path = f"/websocket/room/socket?room={ROOM}&user=anchor&lastReceived={after}"
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S)
        self.sock.sendall(handshake(port, path))
        read_until_join(self.sock, "anchor")
        self.sock.settimeout(None)
        self.reader = threading.Thread(target=self._drop, daemon=True)
        self.reader.start()

    def _drop(self):
        try:
            while self.sock.recv(RECV_BYTES):
                pass
        except OSError:
            pass  # closed by close()

    def close(self):
        self.sock.shutdown(socket.SHUT_RDWR)
        self.reader.join()
        self.sock.close()


class LongPolls:
    """Long polls on one kept-alive connection, each for the events after one id."""

    def __init__(self, port, after):
        self.path = f"/longpolling/room/messages?room={ROOM}&lastReceived={after}"
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT_S)

    def one(self):
        """(latency ns, events) of one poll; raises unless it is answered 200 with FEW events."""
        started = time.perf_counter_ns()
        self.conn.request("GET", self.path)
        answer = self.conn.getresponse()
        body = answer.read()
        latency = time.perf_counter_ns() - started
        events = json.loads(body)
        if answer.status != 200 or len(events) != FEW:
            raise RuntimeError(f"a long poll answered {answer.status} with {body[:200]!r}")
        return latency, len(events)

    def close(self):
        self.conn.close()


class Resumes:
    """WebSocket resumes, one after another, each from FEW - 1 events before the newest it saw."""

    def __init__(self, port, seen):
        self.port = port
        self.seen = list(seen)      # ids the resumes have received, in order
        self.count = 0

    def one(self):
        """(latency ns, events) of one resume: until its replay has arrived (its first
        event; the replay is one write). It ends once its own join has arrived too."""
        self.count += 1
        user, after = f"resume{self.count}", self.seen[-FEW]
        path = f"/websocket/room/socket?room={ROOM}&user={user}&lastReceived={after}"
        started = time.perf_counter_ns()
        with socket.create_connection(("127.0.0.1", self.port), timeout=TIMEOUT_S) as sock:
            sock.sendall(handshake(self.port, path))
            events, replayed_ns = read_until_join(sock, user)
        self.seen += [e["id"] for e in events if e["id"] > self.seen[-1]]
        return replayed_ns - started, len(events)


def read_until_join(sock, user):
    """The events a new WebSocket receives up to its user's own join, and when the
    first of them arrived (time.perf_counter_ns); raises if it closes first."""
    data, first_ns = b"", None
    while b"\r\n\r\n" not in data:
        data += receive(sock)
    head, data = data.split(b"\r\n\r\n", 1)
    if b" 101 " not in head.split(b"\r\n", 1)[0]:
        raise RuntimeError(f"the handshake was answered {head[:80]!r}")
    while True:
        events = [json.loads(payload) for payload in payloads(data)]
        if events and first_ns is None:
            first_ns = time.perf_counter_ns()
        if any(e.get("type") == "join" and e.get("user") == user for e in events):
            return events, first_ns
        data += receive(sock)


def receive(sock):
    data = sock.recv(RECV_BYTES)
    if not data:
        raise RuntimeError("the server closed the connection")
    return data


def payloads(data):
    """The payloads of the complete text frames at the start of data (a server's, unmasked)."""
    found, at = [], 0
    while at + 2 <= len(data):
        size, head = data[at + 1] & 0x7F, 2
        if size == 126:
            size, head = int.from_bytes(data[at + 2:at + 4], "big"), 4
        elif size == 127:
            size, head = int.from_bytes(data[at + 2:at + 10], "big"), 10
        if at + head + size > len(data):
            break
        if data[at] & 0x0F == TEXT_OPCODE:
            found.append(data[at + head:at + head + size])
        at += head + size
    return found


def flat(sizes):
    """({"<kind> <figure>": max/min over the sizes} for FLAT_FIGURES, whether each is
    at most FLAT_RATIO): the sizes' figures are within noise of each other."""
    ratios = {}
    for kind in ("lp", "ws"):
        for figure in FLAT_FIGURES:
            values = [sizes[str(size)][kind][figure] for size in ARCHIVE_SIZES]
            ratios[f"{kind} {figure}"] = max(values) / min(values) if min(values) > 0 else float("inf")
    return ratios, all(ratio <= FLAT_RATIO for ratio in ratios.values())
