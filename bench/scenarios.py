"""The scenarios: each starts its own Redis and gunicorn, drives client processes, returns figures.

- fanout:   WebSocket clients in one room, some sending; the rate is stepped up until
            p99 passes the bound or a delivery is lost, duplicated, out of order or a
            client disconnects. The last passing step is the result.
- steady:   the same clients at one fixed rate.
- idle:     many idle WebSocket clients on one worker: server RSS per client.
- longpoll: many long-poll waiters on one worker, then one post: time to answer all.
- postcost: Redis commands per post (INFO commandstats): one EVALSHA, nothing else.
- floor:    no server: a bare loop's CPU for one loopback write per client per
            message, the machine's least for `steady` (floor.py).
- archive:  long polls and WebSocket resumes a few events behind the newest, with
            archives of 100, 1,000 and 10,000 events: CPU and latency per request (archive.py).
- cluster:  the fan-out clients in rooms spread evenly over the 3 masters of a
            Redis Cluster, at one fixed rate, and the same rooms, clients and
            rate on one Redis: each Redis node's CPU per post beside the one's.
- storm:    every WebSocket dropped at once by a restart and resumed at once (storm.py).
- rooms:    2,000 rooms of 5, a post a second each, against this chat and Flask-SocketIO (rooms.py).
- sockets:  as many idle WebSocket clients as the open-file limits allow, towards 100,000,
            answering pings; then one message in each of 100 rooms (sockets.py).
- tail:     the fan-out room against this chat and gorilla/websocket's chat example: steady
            latency and CPU, find-max, and the floor, in one run (tail.py).

Every process started here is stopped when the scenario ends, also on errors
and Ctrl-C (`Servers` and `ClientPool` are context managers).
"""

import contextlib
import itertools
import json
import multiprocessing
import multiprocessing.connection
import re
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path

from .analysis import LatencyHistogram
from .archive import ARCHIVE_SIZES, resume_costs
from .client import WsLoop
from .floor import floor
from .longpoll import LpLoop
from .loop import now_ns, serve
from .rooms import rooms
from .sockets import sockets
from .servers import Cluster, Gunicorn, Redis, machine_busy, wait_idle_machine
from .storm import storm
from .tail import tail

ROOM = "bench"               # the fan-out room
LEAD_NS = 100_000_000        # a command's start time is this far ahead, so every process has it
REPLY_TIMEOUT = 120.0        # seconds a client process may take to answer a command
READY_TIMEOUT_NS = 60 * 10**9  # after the last connect, time for every client to see its join
QUIET_NS = 300_000_000       # no byte received for this long: the room is quiet
QUIET_MAX_S = 60.0           # longest wait for quiet before a step
DRAIN_TIMEOUT_NS = 5 * 10**9  # after the send window, time for every delivery to arrive
RSS_SAMPLE_S = 0.5           # server RSS is sampled this often for its peak
SEND_RATE_FLOOR = 0.9        # a step that sends under 90 % of its rate fails (wsbench's rule)
IDLE_CPU_SECONDS = 0.02      # server CPU per 0.5 s under which it counts as idle (long polls parked)
LONGPOLL_TIMEOUT = "300"     # CHAT_LONGPOLL_TIMEOUT for the long-poll scenario: no early [] answers
ARCHIVE_PING_INTERVAL = "300"  # CHAT_PING_INTERVAL for the archive scenario: its idle anchor is never closed
ANSWER_BOUND_NS = 10**9      # every long-poll waiter must be answered within 1 s of the post
COLLECT_TIMEOUT_NS = 30 * 10**9  # how long the long-poll scenario waits for answers at most
STORE_IDLE_S = 5.0           # cluster: each Redis node's CPU is sampled this long with no traffic
DISTURBED_PCT = 20.0         # a failed step during which other processes used more of a core is
RETRY_QUIET_S = 120.0        # retried (--retries times) after waiting up to this long for quiet
# What redis-py sends when it opens a connection (a pool grows when two posts
# overlap): postcost counts it apart, as a cost of the connection, not of a post.
CONNECTION_SET_UP = ("hello", "client|setinfo", "select", "auth")
# The hub PINGs each pub/sub connection every second: a cost of the link, not of a post.
LINK_KEEPALIVE = ("ping",)
# What the post script runs that its text names only through ARGV: the publishing command.
SCRIPT_PUBLISH = ("publish", "spublish")


class ClientPool:
    """`procs` client processes running loop_class, each behind a pipe."""

    def __init__(self, loop_class, procs, port):
        ctx = multiprocessing.get_context("spawn")
        self.pipes, self.procs = [], []
        try:
            for _ in range(procs):
                mine, theirs = ctx.Pipe()
                proc = ctx.Process(target=serve, args=(loop_class, theirs, port), daemon=True)
                proc.start()
                theirs.close()
                self.pipes.append(mine)
                self.procs.append(proc)
        except BaseException:
            self.stop()
            raise

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def __len__(self):
        return len(self.pipes)

    def pids(self):
        return [proc.pid for proc in self.procs]

    def send(self, i, name, args=None):
        self.pipes[i].send((name, args or {}))

    def recv(self, i, kind, timeout=REPLY_TIMEOUT):
        """The next reply of process i, which must be `kind`; raises on error or timeout."""
        ready = multiprocessing.connection.wait([self.pipes[i], self.procs[i].sentinel], timeout)
        if self.pipes[i] not in ready:
            state = "exited" if self.procs[i].sentinel in ready else "did not answer"
            raise RuntimeError(f"client process {i} {state} (within {timeout}s, wanted {kind})")
        message = self.pipes[i].recv()
        if message[0] == "error":
            raise RuntimeError(f"client process {i} failed: {message[1]}")
        if message[0] != kind:
            raise RuntimeError(f"client process {i} answered {message[0]}, wanted {kind}")
        return message[1:]

    def call(self, name, args, kind, timeout=REPLY_TIMEOUT):
        """Sends a command to every process (args: one dict for all, or a list),
        gathers replies in process order.

        Each reply is read as soon as it comes, not in turn: a process blocks
        writing a reply bigger than its pipe holds until the reply is read, and
        a blocked process answers none of its clients' pings.
        """
        each = args if isinstance(args, list) else [args] * len(self)
        for i, a in enumerate(each):
            self.send(i, name, a)
        replies, deadline = {}, time.monotonic() + timeout
        while len(replies) < len(self):
            waiting = [i for i in range(len(self)) if i not in replies]
            watched = {self.pipes[i]: i for i in waiting}
            watched.update({self.procs[i].sentinel: i for i in waiting})
            ready = multiprocessing.connection.wait(list(watched),
                                                    max(0.0, deadline - time.monotonic()))
            if not ready:
                raise RuntimeError(f"client process {waiting[0]} did not answer "
                                   f"(within {timeout}s, wanted {kind})")
            for i in sorted({watched[r] for r in ready}):
                replies[i] = self.recv(i, kind, timeout=0)  # raises if it exited
        return [replies[i] for i in range(len(self))]

    def stop(self):
        """Asks each process to close its sockets and exit; kills those that do not."""
        for i, pipe in enumerate(self.pipes):
            try:
                pipe.send(("stop", {}))
            except OSError:
                pass
        for proc in self.procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
                proc.join()
        for pipe in self.pipes:
            pipe.close()
        self.pipes, self.procs = [], []


class Servers:
    """A redis-server and gunicorn with `workers` workers, plus a sampler of the server's peak RSS.

    With `store` (a started Redis or Cluster) gunicorn uses it instead, and
    leaves it running at the end.
    """

    def __init__(self, workers, logdir, extra_env=None, store=None):
        self.tmp = None
        if store is None:
            self.tmp = tempfile.TemporaryDirectory(prefix="bench-redis-")
            store = Redis(self.tmp.name)
        self.redis = store
        try:
            self.gunicorn = Gunicorn(self.redis.redis_url, workers, logdir, extra_env)
        except BaseException:
            self._stop_own_store()
            raise
        self.tree = self.gunicorn.tree
        self.port = self.gunicorn.port
        self.rss_base = self.tree.sample()[1]
        self.rss_peak = self.rss_base
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample_rss, daemon=True)
        self._sampler.start()

    def _sample_rss(self):
        while not self._stop.wait(RSS_SAMPLE_S):
            self.rss_peak = max(self.rss_peak, self.tree.sample()[1])

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._sampler.join()
        try:
            self.gunicorn.stop()
        finally:
            self._stop_own_store()

    def _stop_own_store(self):
        if self.tmp is not None:
            self.redis.stop()
            self.tmp.cleanup()


# --- WebSocket clients -------------------------------------------------------------


def room_of(i, rooms):
    """The room of client i (and so of sender i): rooms[i % len(rooms)]."""
    return rooms[i % len(rooms)]


def connect_clients(pool, port, clients, senders, rate, rooms=(ROOM,), prefix="u",
                    ready_timeout_ns=READY_TIMEOUT_NS):
    """Connects `clients` WebSocket clients (client i in process i % procs, in room_of(i, rooms)).

    The first `senders` clients are senders 0..senders-1. Returns the connect
    figures once every client saw its own join event, failed, or timed out
    (ready_timeout_ns after the last connect is due at `rate`).
    """
    procs = len(pool)
    start = now_ns() + LEAD_NS
    deadline = start + int(clients / rate * 1e9) + ready_timeout_ns
    args = []
    for p in range(procs):
        mine = []
        for i in range(p, clients, procs):
            room = room_of(i, rooms)
            user = f"{prefix}{i}"
            path = f"/websocket/room/socket?room={room}&user={user}"
            mine.append((i, path, room, user, i if i < senders else None))
        args.append({"clients": mine, "rate": rate / procs, "start_ns": start, "deadline_ns": deadline})
    replies = [r[0] for r in pool.call("connect", args, "connected",
                                        timeout=(deadline - now_ns()) / 1e9 + REPLY_TIMEOUT)]
    handshakes = sorted(ms for r in replies for ms in r["handshake_ms"])
    errors = Counter()
    for r in replies:
        errors.update(r["errors"])
    return {
        "clients": clients,
        "connected": sum(r["connected"] for r in replies),
        "ready": sum(r["ready"] for r in replies),
        "failed": sum(r["failed"] for r in replies),
        "errors": dict(errors),
        "connect_s": (max(r["connect_end_ns"] for r in replies) - start) / 1e9,
        "handshake_p50_ms": percentile(handshakes, 0.50),
        "handshake_p99_ms": percentile(handshakes, 0.99),
    }


def wait_quiet(pool):
    """Returns once no client process received a byte for QUIET_NS (or after QUIET_MAX_S)."""
    deadline = time.monotonic() + QUIET_MAX_S
    last, since = None, now_ns()
    while time.monotonic() < deadline:
        received = sum(r[0] for r in pool.call("received", {}, "received"))
        if received != last:
            last, since = received, now_ns()
        elif now_ns() - since >= QUIET_NS:
            return
        time.sleep(0.05)


def settle(pool):
    """Parses what every client got while connecting: (id order violations, close codes)."""
    replies = [r[0] for r in pool.call("settle", {}, "settled")]
    closes = Counter()
    for r in replies:
        closes.update(r["close_codes"])
    return sum(r["totals"].get("id_violations", 0) for r in replies), dict(closes)


def run_step(servers, pool, step, rate, duration_s, senders, p99_bound_ms, rooms=(ROOM,)):
    """One send window at `rate` messages/s, its drain, and its figures (see judge).

    Sender s is in room_of(s, rooms); each receiver expects the messages of its room.
    """
    sampled0, cpu0, _ = now_ns(), *servers.tree.sample()
    redis0, busy0 = servers.redis.cpu(), machine_busy()
    start = now_ns() + LEAD_NS // 2
    end = start + int(duration_s * 1e9)
    sent_replies = pool.call("send", {"step": step, "rate": rate, "senders": senders,
                                      "start_ns": start, "end_ns": end}, "sent",
                             timeout=duration_s + REPLY_TIMEOUT)
    send_end = max(now_ns(), end)
    sent_by_sender = Counter()
    for counts, _ in sent_replies:
        sent_by_sender.update(counts)
    total_sent = sum(sent_by_sender.values())
    sent_by_room = {}   # room -> {sender: messages sent}
    for sender, count in sent_by_sender.items():
        sent_by_room.setdefault(room_of(sender, rooms), {})[sender] = count
    drained = pool.call("drain", {"sent_by_room": sent_by_room,
                                  "deadline_ns": send_end + DRAIN_TIMEOUT_NS}, "drained",
                        timeout=DRAIN_TIMEOUT_NS / 1e9 + REPLY_TIMEOUT)
    drain_end = max(t for t, _ in drained)
    cpu1, rss = servers.tree.sample()
    redis1, busy = servers.redis.cpu(), machine_busy() - busy0
    redis_nodes = {node: redis1[node] - redis0[node] for node in redis0}
    redis_cpu = sum(redis_nodes.values())
    sampled = (now_ns() - sampled0) / 1e9   # the interval every CPU figure covers
    replies = [r[0] for r in pool.call("analyze", {
        "step": step, "sent_by_room": sent_by_room, "send_end_ns": send_end}, "analysis")]
    hist = LatencyHistogram()
    totals, closes, dead = Counter(), Counter(), Counter()
    for r in replies:
        hist.merge(LatencyHistogram(*r["hist"]))
        totals.update(r["totals"])
        closes.update(r["close_codes"])
        dead.update(r["dead"])
    receivers = sum(r["receivers"] for r in replies)
    window = (send_end - start) / 1e9
    srv_cpu = cpu1 - cpu0
    gen_cpu = sum(r["window_cpu_s"] for r in replies)
    delivered = totals["delivered"]
    result = {
        "step": step, "rate": rate, "senders": senders, "receivers": receivers,
        "sent": total_sent, "send_rate": total_sent / (duration_s or 1),
        "send_lag_max_ms": max(lag for _, lag in sent_replies) / 1e6,
        "expected": totals["expected"], "delivered": delivered,
        "lost": totals["lost"], "duplicates": totals["duplicates"],
        "out_of_order": totals["out_of_order"], "unexpected": totals["unexpected"],
        "stale": totals["stale"], "id_violations": totals["id_violations"],
        "error_frames": totals["errors"], "disconnects": totals["disconnects"],
        "disconnect_reasons": dict(dead), "close_codes": dict(closes),
        "latency_p50_ms": hist.quantile_ms(0.50), "latency_p90_ms": hist.quantile_ms(0.90),
        "latency_p99_ms": hist.quantile_ms(0.99), "latency_max_ms": hist.max_ns / 1e6,
        "latency_mean_ms": hist.mean_ms(), "latency_negative": hist.negative,
        "window_s": window, "drain_s": (drain_end - send_end) / 1e9,
        "deliveries_per_s": totals["in_window"] / window,
        "srv_cpu_s": srv_cpu, "srv_cpu_pct": 100 * srv_cpu / sampled,
        "srv_cpu_ms_per_1k": srv_cpu * 1e6 / delivered if delivered else None,
        "srv_rss_mb": rss / 1024,
        "redis_cpu_pct": 100 * redis_cpu / sampled,
        "redis_node_cpu_pct": {node: 100 * cpu / sampled for node, cpu in redis_nodes.items()},
        "redis_node_ms_per_1k_posts": {node: cpu * 1e6 / total_sent if total_sent else None
                                       for node, cpu in redis_nodes.items()},
        "gen_cpu_s": gen_cpu, "gen_cpu_pct": 100 * gen_cpu / sampled,
        "other_cpu_pct": 100 * (busy - srv_cpu - redis_cpu - gen_cpu) / sampled,
        "cpu_window_s": sampled, "gen_analysis_cpu_s": sum(r["analysis_cpu_s"] for r in replies),
        "streams_identical": totals["identical"], "streams_parsed": totals["parsed"],
    }
    result["reason"] = judge(result, p99_bound_ms)
    result["pass"] = result["reason"] is None
    return result


def judge(r, p99_bound_ms):
    """Why a step fails, or None: wsbench's rules, plus every correctness counter at 0."""
    if r["sent"] == 0:
        return "nothing sent"
    if r["send_rate"] < SEND_RATE_FLOOR * r["rate"]:
        return f"sent {r['send_rate']:.0f}/s, under 90 % of the rate (generator limit)"
    for key in ("lost", "duplicates", "out_of_order", "unexpected", "id_violations",
                "disconnects", "error_frames", "latency_negative"):
        if r[key]:
            return f"{key}: {r[key]}"
    if r["latency_p99_ms"] > p99_bound_ms:
        return f"p99 {r['latency_p99_ms']:.0f} ms > {p99_bound_ms:.0f} ms"
    return None


def fanout_clients(cfg, servers, pool):
    """Connects the fan-out clients; returns the connect figures with the idle RSS per client."""
    connect = connect_clients(pool, servers.port, cfg.clients, cfg.senders, cfg.connect_rate)
    wait_quiet(pool)
    connect["id_violations"], connect["close_codes"] = settle(pool)
    rss = servers.tree.sample()[1]
    connect["srv_rss_idle_kb_per_client"] = (rss - servers.rss_base) / max(connect["ready"], 1)
    if connect["ready"] < cfg.clients:
        raise RuntimeError(f"only {connect['ready']} of {cfg.clients} clients ready: {connect}")
    return connect


def fanout(cfg, logdir):
    """Scenario 1: find-max. Steps up from cfg.start_rate by cfg.step_factor."""
    with Servers(cfg.workers, logdir) as servers, ClientPool(WsLoop, cfg.procs, servers.port) as pool:
        connect = fanout_clients(cfg, servers, pool)
        steps, rate, best, retries = [], cfg.start_rate, None, cfg.retries
        stop_reason = f"reached --max-steps {cfg.max_steps}"
        while len(steps) < cfg.max_steps + cfg.retries:
            wait_quiet(pool)
            if cfg.wait_idle:
                wait_idle_machine(cfg.wait_idle, exclude=servers.tree.pids() + pool.pids())
            step = len(steps) + 1
            r = run_step(servers, pool, step, rate, cfg.step_duration, cfg.senders, cfg.p99_ms)
            steps.append(r)
            log_step(r)
            if not r["pass"] and r["other_cpu_pct"] > DISTURBED_PCT and retries:
                retries -= 1
                r["retried"] = True
                cores = wait_idle_machine(RETRY_QUIET_S, exclude=servers.tree.pids() + pool.pids())
                print(f"  step {step} was disturbed (other processes used {r['other_cpu_pct']:.0f} % "
                      f"of a core): again at {rate:.0f} msg/s ({cores:.2f} busy cores now)",
                      file=sys.stderr, flush=True)
                continue
            if not r["pass"]:
                stop_reason = f"step {step} at {rate:.0f} msg/s: {r['reason']}"
                break
            best = r
            if sum(1 for s in steps if s["pass"]) >= cfg.max_steps:
                break
            rate *= cfg.step_factor
        peak = servers.rss_peak
    return {"connect": connect, "steps": steps, "best": best, "stop_reason": stop_reason,
            "srv_rss_base_mb": servers.rss_base / 1024,
            "srv_rss_kb_per_client": (peak - servers.rss_base) / connect["ready"]}


def steady(cfg, logdir):
    """Scenario 2: one window at cfg.steady_rate with the fan-out clients."""
    with Servers(cfg.workers, logdir) as servers, ClientPool(WsLoop, cfg.procs, servers.port) as pool:
        connect = fanout_clients(cfg, servers, pool)
        wait_quiet(pool)
        if cfg.wait_idle:
            wait_idle_machine(cfg.wait_idle, exclude=servers.tree.pids() + pool.pids())
        r = run_step(servers, pool, 1, cfg.steady_rate, cfg.steady_duration, cfg.senders,
                     cfg.p99_ms)
        log_step(r)
        peak = servers.rss_peak
    return {"connect": connect, "step": r, "srv_rss_base_mb": servers.rss_base / 1024,
            "srv_rss_kb_per_client": (peak - servers.rss_base) / connect["ready"]}


def idle(cfg, logdir):
    """Scenario 3: cfg.idle_clients idle clients in cfg.idle_rooms rooms on one worker."""
    with Servers(1, logdir) as servers, ClientPool(WsLoop, cfg.idle_procs, servers.port) as pool:
        before = servers.tree.sample()[1]
        connect = connect_clients(pool, servers.port, cfg.idle_clients, 0, cfg.connect_rate,
                                  rooms=[f"r{k}" for k in range(cfg.idle_rooms)])
        wait_quiet(pool)
        after = servers.tree.sample()[1]
        connect["id_violations"], connect["close_codes"] = settle(pool)
        connect["srv_rss_before_mb"] = before / 1024
        connect["srv_rss_after_mb"] = after / 1024
        connect["srv_rss_kb_per_client"] = (after - before) / max(connect["ready"], 1)
        connect["not_ready"] = cfg.idle_clients - connect["ready"]
    return connect


def longpoll(cfg, logdir):
    """Scenario 4: cfg.lp_waiters long polls on one worker, then one post."""
    room = "lp"
    env = {"CHAT_LONGPOLL_TIMEOUT": LONGPOLL_TIMEOUT}
    with Servers(1, logdir, env) as servers, ClientPool(LpLoop, cfg.lp_procs, servers.port) as pool:
        base = f"http://127.0.0.1:{servers.port}/longpolling/room/messages"
        newest = post_http(base, room, "seed", "before the waiters")["id"]
        start = now_ns() + LEAD_NS
        procs = len(pool)
        polling = [r[0] for r in pool.call("poll", [
            {"room": room, "last_received": newest, "rate": cfg.connect_rate / procs,
             "start_ns": start, "indexes": list(range(p, cfg.lp_waiters, procs))}
            for p in range(procs)], "polling", timeout=cfg.lp_waiters / cfg.connect_rate + REPLY_TIMEOUT)]
        connect_s = (now_ns() - start) / 1e9
        wait_idle(servers)
        rss = servers.tree.sample()[1]
        text = "wake up"
        posted_ns = now_ns()
        post_http(base, room, "poster", text)
        post_ns = now_ns() - posted_ns
        answers = [r[0] for r in pool.call("collect", {"text": text,
                                                       "deadline_ns": posted_ns + COLLECT_TIMEOUT_NS},
                                           "answers", timeout=COLLECT_TIMEOUT_NS / 1e9 + REPLY_TIMEOUT)]
    done = sorted((t - posted_ns) / 1e6 for a in answers for t in a["done_ns"])
    statuses, errors = Counter(), Counter()
    for a in answers + polling:
        errors.update(a["errors"])
    for a in answers:
        statuses.update(a["statuses"])
    return {
        "waiters": sum(p["waiters"] for p in polling), "connect_s": connect_s,
        "answered": len(done), "statuses": {str(k): v for k, v in statuses.items()},
        "wrong_body": sum(a["wrong_body"] for a in answers),
        "wrong_examples": [e for a in answers for e in a["wrong_examples"]][:3],
        "unanswered": sum(a["unanswered"] for a in answers), "errors": dict(errors),
        "post_ms": post_ns / 1e6,
        "all_answered_ms": done[-1] if done else None,
        "answer_p50_ms": percentile(done, 0.5), "answer_p99_ms": percentile(done, 0.99),
        "late": sum(1 for ms in done if ms > ANSWER_BOUND_NS / 1e6),
        "srv_rss_kb_per_waiter": (rss - servers.rss_base) / max(len(done), 1),
    }


def wait_idle(servers, most_s=QUIET_MAX_S):
    """Returns once the server used under IDLE_CPU_SECONDS of CPU in 0.5 s (requests parked)."""
    deadline = time.monotonic() + most_s
    last = servers.tree.sample()[0]
    while time.monotonic() < deadline:
        time.sleep(0.5)
        cpu = servers.tree.sample()[0]
        if cpu - last < IDLE_CPU_SECONDS:
            return
        last = cpu


def post_http(base, room, user, text):
    """POSTs a message as a form; returns the event (raises unless 201)."""
    query = urllib.parse.urlencode({"room": room, "user": user})
    body = urllib.parse.urlencode({"message": text}).encode()
    with urllib.request.urlopen(urllib.request.Request(f"{base}?{query}", data=body), timeout=30) as r:
        if r.status != 201:
            raise RuntimeError(f"POST answered {r.status}")
        return json.loads(r.read())


def postcost(cfg, logdir):
    """Scenario 5: Redis commands per post, over WebSocket and HTTP, from INFO commandstats."""
    from chat_app.room import POST_SCRIPT  # the commands the post script runs inside Redis
    in_script = {c.lower() for c in re.findall(r"redis\.call\('(\w+)'", POST_SCRIPT)}
    in_script.update(SCRIPT_PUBLISH)
    with Servers(cfg.workers, logdir) as servers, ClientPool(WsLoop, 1, servers.port) as pool:
        receivers = 10
        connect_clients(pool, servers.port, receivers, receivers, cfg.connect_rate, prefix="pc")
        wait_quiet(pool)
        settle(pool)
        run_step(servers, pool, 1, 100, 0.2, receivers, 1e9)  # warm-up: scripts loaded
        wait_quiet(pool)
        servers.redis.client.config_resetstat()
        ws = run_step(servers, pool, 2, cfg.posts / 2, 2.0, receivers, 1e9)
        base = f"http://127.0.0.1:{servers.port}/longpolling/room/messages"
        for i in range(cfg.posts // 5):
            post_http(base, ROOM, "http", f"http post {i}")
        wait_quiet(pool)
        stats = servers.redis.commandstats()
    posts = ws["sent"] + cfg.posts // 5
    stats.pop("config|resetstat", None)
    stats.pop("config", None)
    stats.pop("info", None)
    set_up = {k: stats.pop(k) for k in CONNECTION_SET_UP if k in stats}
    keepalive = {k: stats.pop(k) for k in LINK_KEEPALIVE if k in stats}
    return {
        "posts": posts, "ws_posts": ws["sent"], "http_posts": cfg.posts // 5,
        "ws_delivered": ws["delivered"], "ws_lost": ws["lost"],
        "evalsha_per_post": stats.get("evalsha", 0) / posts,
        "in_script_per_post": {k: v / posts for k, v in sorted(stats.items())
                               if k in in_script},
        "other_per_post": {k: v / posts for k, v in sorted(stats.items())
                           if k not in in_script and k != "evalsha"},
        "other_calls": {k: v for k, v in sorted(stats.items())
                        if k not in in_script and k != "evalsha"},
        "connections_opened": set_up.get("hello", 0),
        "set_up_calls": set_up,
        "link_keepalive_calls": keepalive,
    }


def archive(cfg, logdir):
    """Scenario 7: cfg.archive_requests long polls and WebSocket resumes near the newest
    event per archive size, each size on a server of its own (one worker), in turns."""
    with contextlib.ExitStack() as stack:
        servers = {size: stack.enter_context(Servers(1, logdir, {
            "CHAT_ARCHIVE_SIZE": str(size), "CHAT_PING_INTERVAL": ARCHIVE_PING_INTERVAL}))
            for size in ARCHIVE_SIZES}
        return {"requests": cfg.archive_requests,
                "sizes": resume_costs(servers, cfg.archive_requests)}


_cluster_runs = itertools.count()  # which store goes first alternates from run to run


def cluster(cfg, logdir):
    """Scenario 7: the fan-out clients in cfg.cluster_rooms rooms, as many on each of
    a Redis Cluster's 3 masters, one window at cfg.cluster_rate; then (or first, every
    other run) the same rooms, clients and rate on one Redis."""
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
        nodes = Cluster(Path(tmp) / "cluster")
        try:
            rooms = nodes.rooms(cfg.cluster_rooms)
            single = Redis(Path(tmp) / "single")
            try:
                sides = [("single", single), ("cluster", nodes)]
                if next(_cluster_runs) % 2:
                    sides.reverse()
                result = {"rate": cfg.cluster_rate, "rooms": len(rooms), "room_names": rooms,
                          "rooms_per_master": len(rooms) // 3, "clients": cfg.clients,
                          "senders": cfg.senders, "workers": cfg.workers,
                          "order": [name for name, _ in sides]}
                for name, store in sides:
                    print(f"  {name}: {len(rooms)} rooms "
                          f"{'over 3 masters' if store is nodes else 'on one Redis'}",
                          file=sys.stderr, flush=True)
                    result[name] = cluster_side(cfg, logdir, store, rooms)
            finally:
                single.stop()
        finally:
            nodes.stop()
    return cluster_figures(result)


def cluster_side(cfg, logdir, store, rooms):
    """One store's half of the cluster scenario: connect, measure the idle store, one window."""
    with Servers(cfg.workers, logdir, store=store) as servers, \
            ClientPool(WsLoop, cfg.procs, servers.port) as pool:
        connect = connect_clients(pool, servers.port, cfg.clients, cfg.senders, cfg.connect_rate,
                                  rooms=rooms)
        wait_quiet(pool)
        connect["id_violations"], connect["close_codes"] = settle(pool)
        if connect["ready"] < cfg.clients:
            raise RuntimeError(f"only {connect['ready']} of {cfg.clients} clients ready: {connect}")
        if cfg.wait_idle:
            wait_idle_machine(cfg.wait_idle, exclude=servers.tree.pids() + pool.pids())
        before = store.cpu()
        time.sleep(STORE_IDLE_S)
        idle = {node: 100 * (cpu - before[node]) / STORE_IDLE_S for node, cpu in store.cpu().items()}
        r = run_step(servers, pool, 1, cfg.cluster_rate, cfg.cluster_duration, cfg.senders,
                     cfg.p99_ms, rooms=rooms)
        log_step(r)
    return {"connect": connect, "step": r, "redis_idle_cpu_pct": idle}


def cluster_figures(result):
    """Adds the comparisons: the masters' and the replicas' CPU per 1,000 posts, and ratios."""
    if not (result["single"]["step"]["sent"] and result["cluster"]["step"]["sent"]):
        return result  # a window that sent nothing failed (judge): no figures per post
    single = result["single"]["step"]["redis_node_ms_per_1k_posts"]["redis"]
    nodes = result["cluster"]["step"]["redis_node_ms_per_1k_posts"]
    masters = [v for node, v in nodes.items() if node.startswith("master")]
    replicas = [v for node, v in nodes.items() if node.startswith("replica")]
    result["masters_ms_per_1k_posts"] = sum(masters)
    result["replicas_ms_per_1k_posts"] = sum(replicas)
    result["busiest_master_per_single"] = max(masters) / single if single else None
    result["masters_per_single"] = sum(masters) / single if single else None
    result["deliveries_cluster_per_single"] = (
        result["cluster"]["step"]["deliveries_per_s"] / result["single"]["step"]["deliveries_per_s"]
        if result["single"]["step"]["deliveries_per_s"] else None)
    return result


def percentile(sorted_values, q):
    """The q-quantile of an ascending list (nearest rank), None when empty."""
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, max(0, int(round(q * len(sorted_values))) - 1))]


def log_step(r):
    """One progress line per step, on stderr."""
    verdict = "PASS" if r["pass"] else f"FAIL: {r['reason']}"
    p50, p99 = r["latency_p50_ms"] or float("nan"), r["latency_p99_ms"] or float("nan")
    print(f"  step {r['step']}: {r['rate']:.0f} msg/s, {r['deliveries_per_s']:.0f} deliveries/s, "
          f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
          f"server {r['srv_cpu_ms_per_1k']:.2f} ms CPU/1k; % of a core: server "
          f"{r['srv_cpu_pct']:.0f}, redis {r['redis_cpu_pct']:.0f}, generator {r['gen_cpu_pct']:.0f}, "
          f"others {r['other_cpu_pct']:.0f}: {verdict}", file=sys.stderr, flush=True)


SCENARIOS = {"fanout": fanout, "steady": steady, "idle": idle, "longpoll": longpoll,
             "postcost": postcost, "floor": floor, "archive": archive, "cluster": cluster,
             "storm": storm, "rooms": rooms, "sockets": sockets, "tail": tail}
