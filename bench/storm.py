"""Scenario `storm`: every WebSocket dropped at once by a restart, every one back at once.

cfg.storm_clients WebSocket clients in rooms of ROOM_SIZE (10,000 in 2,000
rooms by default), cfg.workers gunicorn workers, one Redis. Once every client
has seen its own join, the gunicorn master gets SIGHUP: it starts as many
new workers and sends each old one SIGTERM, on which the old workers close
every WebSocket with 1012 (gunicorn.conf.py). That is a restart as a deploy
does it, and the worst case for a storm: every client of the server is
dropped within moments and comes back to workers that have just started.
(SIGTERM to one worker would drop only its share of the clients, who would
then land mostly on the other, warm, worker, and the rate per worker would
mean little.)

A client that gets a close frame answers it and reconnects at once with
lastReceived = the newest id it has: every client comes back together, the
worst case. (The page, static/websocket.js, waits for the TCP close, which a
stopping worker sends after posting the leave, then 0.5 s more.) A
reconnection that does not resume (1012 from an old worker, which goes on
accepting until its once-a-second check of gunicorn's stop flag; a
connection closed or reset before its answer) is made again after 0.5 s, as
the page does, not in a tight loop. A client has resumed once its own join
arrives on a connection made after the drop. Each client connects from a
loopback address of its own (127.1.x.y), so that twice 10,000 connections
to one port never wait on the kernel's search for a free local port.

Checked per client over its whole life: every event's prev is the id of the
event before it (the first one's prev is 0: each room starts empty), no id
comes twice, and once the rooms are quiet the client's newest id is its
room's newest (the `last` key in Redis): nothing missed.

Measured from the SIGHUP: the time until every client has resumed, joins a
second per worker (clients / that time / workers), and server CPU per join:
utime+stime of the gunicorn tree (master, old and new workers; a worker
that exited counts through its master's cutime+cstime) from the SIGHUP
until the old workers have exited and the rooms are quiet, divided by the
joins. That includes the new workers' start (importing the app) and the old
workers' closes and leaves, each shown apart; the CPU of a worker's start,
read when the scenario's first workers were up, is shown beside them, as is
the new workers' CPU less it. Where a resume's time went: from its connect()
to the 101 (the listen queue, accept, Flask, the handshake), from the 101 to
its own join, and the join's delivery (from the Redis clock in its id).
"""

import heapq
import os
import re
import select
import signal
import sys
import threading
import time
from collections import Counter

from chat_app.config import Settings
from chat_app.limits import read_somaxconn
from chat_app.room import Rooms

from .analysis import parse
from .archive import redis_cpu
from .client import handshake
from .loop import CONNECTING, OPEN, Conn, Loop, bind_source, now_ns
from .servers import CLK_TCK, ProcTree, _stat, machine_busy, wait_idle_machine

ROOM_SIZE = 5                     # clients per room
TARGET_JOINS = 2_000              # joins a second per worker, the target
PING_INTERVAL = "300"             # CHAT_PING_INTERVAL: no ping round during the scenario
STORM_TIMEOUT_NS = 180 * 10**9    # after the SIGHUP, time for every client to resume
CONNECT_TIMEOUT_NS = 60 * 10**9   # after the last connect, time for every client to see its join
EXIT_TIMEOUT_S = 30.0             # after every client resumed, time for the old workers to exit
MAX_ATTEMPTS = 50                 # reconnections of one client after the drop, at most
RETRY_NS = 500_000_000            # wait before a reconnection after a refused one (the page's)
READ_EVENTS = select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR
# An event as the post script writes it; its text is "" for joins and leaves,
# and a quote inside a text is escaped, so `,"prev":` ends the event.
EVENT = re.compile(rb'\{"id":(\d+),"type":"(\w+)","room":"[^"]*","user":"([^"]*)",'
                   rb'.*?,"prev":(\d+)\}', re.DOTALL)


def source_address(index):
    """Client index's loopback address: 127.1.x.y, one per client (up to 62,500)."""
    return f"127.1.{index // 250 % 250}.{index % 250 + 1}"


def close_reply(code):
    """The client's answer to a close frame: a masked (key 0) close frame echoing its code."""
    return b"\x88\x82\x00\x00\x00\x00" + code.to_bytes(2, "big")


def socket_path(room, user, last_received):
    path = f"/websocket/room/socket?room={room}&user={user}"
    return f"{path}&lastReceived={last_received}" if last_received else path


class StormConn(Conn):
    __slots__ = ("room", "user", "buf", "last_id", "joined_ns", "dropped_ns", "resumed_ns",
                 "attempts")

    def __init__(self, index, room, user, port):
        super().__init__(index, handshake(port, socket_path(room, user, 0)))
        self.room, self.user = room, user.encode()
        self.buf = bytearray()   # what arrived and is not a whole frame yet
        self.last_id = 0         # the newest event id received, over every connection
        self.joined_ns = 0       # when this connection's own join arrived; 0: not yet
        self.dropped_ns = 0      # when the first close after arming arrived
        self.resumed_ns = 0      # when the own join arrived on a connection made after it
        self.attempts = 0        # connections made after the first


class StormLoop(Loop):
    """Clients that reconnect with lastReceived when their socket is closed (once armed).

    Commands: connect(clients=[(index, room, user)], rate, start_ns,
    deadline_ns): ("connected", figures) once each saw its own join, failed,
    or the deadline passed; received(): ("received", bytes ever); arm():
    ("armed",), from then on a closed client reconnects; await(deadline_ns):
    ("resumed", figures) once every client resumed, or at the deadline;
    report(): ("report", figures); and the base's stop and cpu.
    """

    def __init__(self, pipe, port):
        super().__init__(pipe, port)
        self.clients = []
        self.received = 0
        self.armed = False
        self.reopen = []           # clients to reconnect at the next tick
        self.retries = []          # heap of (due ns, index, client) refused, to reconnect later
        self.waiting = None        # (reply kind, deadline ns) of the command being answered
        self.totals = Counter()    # events, gaps, repeats, error and other frames
        self.closes = Counter()    # close codes received
        self.drops = Counter()     # why each connection made after arming ended before resuming
        self.connect_errors = Counter()  # why a connection ended before arming
        self.phases = []           # (connect µs, 101 to own join µs, join's delivery µs) of each resume

    def on_command(self, name, args):
        if name == "connect":
            self.clients = [StormConn(i, room, user, self.port) for i, room, user in args["clients"]]
            self.connect(list(self.clients), args["rate"], args["start_ns"])
            self.waiting = ("connected", args["deadline_ns"])
        elif name == "received":
            self.reply("received", self.received)
        elif name == "arm":
            self.armed = True
            self.reply("armed")
        elif name == "await":
            self.waiting = ("resumed", args["deadline_ns"])
        elif name == "report":
            self.reply("report", self.report())
        else:
            super().on_command(name, args)

    # --- receiving -----------------------------------------------------------------

    def before_connect(self, sock, conn):
        """Each client connects from an address of its own, its port chosen at
        connect() (IP_BIND_ADDRESS_NO_PORT) among those free for that address:
        with one address for all, Linux tries connect()'s half of the local port
        range first, and once about 14,000 of its ports to the server were taken
        (open or in TIME_WAIT) each connect() spent milliseconds searching."""
        bind_source(sock, source_address(conn.index))

    def on_open(self, conn, head, rest):
        if not head.startswith(b"HTTP/1.1 101"):
            self.fail(conn, "handshake: " + head.split(b"\r\n", 1)[0].decode("latin-1"))
        elif rest:
            self.take(conn, rest, now_ns())

    def on_ready(self, conn, events):
        if events & READ_EVENTS:
            data = self.receive(conn)
            if data is not None:
                self.take(conn, data, now_ns())

    def take(self, conn, data, t):
        """Checks each whole event frame against the chain; answers a close frame and drops."""
        self.received += len(data)
        conn.buf += data
        frames = parse(conn.buf)
        whole = bytes(conn.buf[:frames.consumed])
        del conn.buf[:frames.consumed]
        totals = self.totals
        for m in EVENT.finditer(whole):
            eid, prev = int(m[1]), int(m[4])
            totals["events"] += 1
            if eid <= conn.last_id:
                totals["repeats"] += 1
                continue
            if prev != conn.last_id:
                totals["gaps"] += 1
            conn.last_id = eid
            if m[2] == b"join" and m[3] == conn.user and not conn.joined_ns:
                conn.joined_ns = t
                if conn.dropped_ns and not conn.resumed_ns:
                    conn.resumed_ns = t
                    # where the resume's time went: connecting (to the 101), joining,
                    # and the join's delivery (its id is Redis's clock in µs)
                    self.phases.append(((conn.open_ns - conn.started_ns) // 1000,
                                        (t - conn.open_ns) // 1000,
                                        time.time_ns() // 1000 - eid))
        totals["error_frames"] += frames.errors
        totals["other_frames"] += frames.other
        if frames.close_codes:
            code = frames.close_codes[0]
            self.closes[code] += 1
            try:
                conn.sock.send(close_reply(code))
            except OSError:
                pass
            self.fail(conn, f"close {code}")

    # --- reconnecting ------------------------------------------------------------

    def on_dead(self, conn):
        del self.conns[conn.fd]  # now, before a new socket may take the same number
        if not self.armed:  # still connecting (a busy server's accept queue overflows): again
            self.connect_errors[conn.error] += 1
            self.retry(conn)
        elif not conn.dropped_ns:  # the restart's drop: back at once
            conn.dropped_ns = now_ns()
            self.reopen.append(conn)
        elif not conn.resumed_ns:  # a reconnection refused, or dropped before its join
            self.drops[conn.error] += 1
            self.retry(conn)
        else:
            self.totals["dropped_after_resuming"] += 1
            self.reopen.append(conn)

    def retry(self, conn):
        if conn.attempts < MAX_ATTEMPTS:
            heapq.heappush(self.retries, (now_ns() + RETRY_NS, conn.index, conn))

    def reconnect(self, conn):
        """The same client on a new connection, with lastReceived = its newest id."""
        conn.attempts += 1
        conn.state, conn.head, conn.open_ns, conn.error = CONNECTING, b"", 0, None
        conn.joined_ns = 0
        conn.buf = bytearray()
        conn.request = handshake(self.port, socket_path(conn.room, conn.user.decode(), conn.last_id))
        self._open(conn)

    def timeout(self, now):
        if self.reopen:
            return 0
        due = [self.waiting[1]] if self.waiting else []
        if self.retries:
            due.append(self.retries[0][0])
        return max(0, min(due) - now) / 1e9 if due else None

    def tick(self, now):
        reopen, self.reopen = self.reopen, []
        while self.retries and self.retries[0][0] <= now:
            reopen.append(heapq.heappop(self.retries)[2])
        for conn in reopen:
            self.reconnect(conn)
        if self.waiting is None:
            return
        kind, deadline = self.waiting
        if kind == "connected":
            done = not self.pending and all(c.joined_ns for c in self.clients)
        else:
            done = all(c.resumed_ns for c in self.clients)
        if done or now >= deadline:
            self.waiting = None
            self.reply(kind, self.connected() if kind == "connected" else self.resumed())

    # --- figures -----------------------------------------------------------------------

    def connected(self):
        ready = [c for c in self.clients if c.joined_ns and c.state == OPEN]
        attempts = sum(c.attempts for c in self.clients)
        for c in self.clients:
            c.attempts = 0
        return {"clients": len(self.clients), "ready": len(ready), "retries": attempts,
                "errors": dict(self.connect_errors),
                "ready_ns": max((c.joined_ns for c in ready), default=0)}

    def resumed(self):
        return {"dropped_ns": [c.dropped_ns for c in self.clients if c.dropped_ns],
                "resumed_ns": [c.resumed_ns for c in self.clients if c.resumed_ns],
                "attempts": sum(c.attempts for c in self.clients),
                "not_resumed": sum(1 for c in self.clients if not c.resumed_ns),
                "drops": dict(self.drops), "phases": self.phases}

    def report(self):
        return {"totals": dict(self.totals), "closes": dict(self.closes),
                "open": sum(1 for c in self.clients if c.state == OPEN),
                "last_ids": [(c.room, c.last_id) for c in self.clients],
                "ports": [c.sock.getsockname()[1] for c in self.clients if c.state == OPEN]}


# --- the orchestrator ----------------------------------------------------------------


def storm(cfg, logdir):
    """Scenario 8: cfg.storm_clients clients in rooms of ROOM_SIZE on cfg.workers workers,
    all dropped at once by a restart (SIGHUP to the master), all back at once."""
    # scenarios.py registers this scenario, and holds the servers' and clients' plumbing
    from .scenarios import LEAD_NS, REPLY_TIMEOUT, ClientPool, Servers, percentile, wait_quiet

    env = {"CHAT_PING_INTERVAL": PING_INTERVAL}
    with Servers(cfg.workers, logdir, env) as servers, \
            ClientPool(StormLoop, cfg.storm_procs, servers.port) as pool:
        master = servers.gunicorn.process.pid
        old = [pid for pid in servers.tree.pids() if pid != master]
        start_cpu_s = sum(ProcTree(pid).sample()[0] for pid in old) / len(old)
        connect = connect_rooms(pool, cfg.storm_clients, cfg.connect_rate, LEAD_NS, REPLY_TIMEOUT)
        wait_quiet(pool)
        if cfg.wait_idle:
            wait_idle_machine(cfg.wait_idle, exclude=servers.tree.pids() + pool.pids())
        pool.call("arm", {}, "armed")
        before = Sample(servers, pool, old)
        t0 = now_ns()
        os.kill(master, signal.SIGHUP)
        exit_watch = ExitWatch(old)
        replies = [r[0] for r in pool.call("await", {"deadline_ns": t0 + STORM_TIMEOUT_NS}, "resumed",
                                           timeout=STORM_TIMEOUT_NS / 1e9 + REPLY_TIMEOUT)]
        resumed = Sample(servers, pool, old)
        exit_watch.join(EXIT_TIMEOUT_S)
        exited = exit_watch.exited_ns
        wait_quiet(pool)
        after = Sample(servers, pool, old)
        new = [pid for pid in servers.tree.pids() if pid != master]
        reports = [r[0] for r in pool.call("report", {}, "report")]
        ports = {port for r in reports for port in r["ports"]}
        per_worker = [servers.gunicorn.connections(pid, ports) for pid in new]
        newest = room_lasts(servers.redis.client, {room for r in reports for room, _ in r["last_ids"]})
    result = figures(cfg, t0, replies, reports, newest, (before, resumed, after), percentile)
    join_ms = (after.new - len(new) * start_cpu_s) * 1e3 / max(result["joins"], 1)
    result.update({"connect": connect, "per_new_worker": per_worker,
                   "old_exited_s": (exited - t0) / 1e9 if exited else None,
                   "start_cpu_s": start_cpu_s, "new_less_start_cpu_ms_per_join": join_ms,
                   # the most joins a second a worker could take at that CPU per
                   # join with a core to itself (nothing else on the machine)
                   "joins_per_s_per_core": 1e3 / join_ms if join_ms > 0 else None})
    log(result)
    return result


def connect_rooms(pool, clients, rate, lead_ns, reply_timeout):
    """Connects `clients` clients (client i in room s<i // ROOM_SIZE>, in process
    i % procs) at `rate` a second; raises unless every one saw its own join."""
    procs = len(pool)
    start = now_ns() + lead_ns
    deadline = start + int(clients / rate * 1e9) + CONNECT_TIMEOUT_NS
    args = [{"clients": [(i, f"s{i // ROOM_SIZE}", f"u{i}") for i in range(p, clients, procs)],
             "rate": rate / procs, "start_ns": start, "deadline_ns": deadline}
            for p in range(procs)]
    replies = [r[0] for r in pool.call("connect", args, "connected",
                                        timeout=(deadline - now_ns()) / 1e9 + reply_timeout)]
    ready = sum(r["ready"] for r in replies)
    errors = Counter()
    for r in replies:
        errors.update(r["errors"])
    if ready < clients:
        raise RuntimeError(f"only {ready} of {clients} clients saw their join: {dict(errors)}")
    return {"clients": clients, "ready": ready, "retries": sum(r["retries"] for r in replies),
            "errors": dict(errors), "connect_s": (max(r["ready_ns"] for r in replies) - start) / 1e9}


class Sample:
    """CPU seconds so far: the gunicorn master's own, its reaped workers' (cutime +
    cstime), its live `old` workers', its other (new) workers'; Redis's, the client
    processes' and the whole machine's (busy)."""

    def __init__(self, servers, pool, old):
        root = servers.tree.root
        cpu = {pid: ProcTree(pid).sample()[0] for pid in servers.tree.pids() if pid != root}
        stat = _stat(root)
        self.t = now_ns()
        self.master = (int(stat[11]) + int(stat[12])) / CLK_TCK
        self.reaped = (int(stat[13]) + int(stat[14])) / CLK_TCK
        self.old = sum(v for pid, v in cpu.items() if pid in old)
        self.new = sum(v for pid, v in cpu.items() if pid not in old)
        self.server = self.master + self.reaped + self.old + self.new
        self.redis = redis_cpu(servers.redis.client)
        self.clients = sum(r[0] for r in pool.call("cpu", {}, "cpu"))
        self.busy = machine_busy()
        self.overflows = listen_overflows()


class ExitWatch(threading.Thread):
    """Notes when the last of pids has exited and been reaped (now_ns; polled every 50 ms)."""

    def __init__(self, pids):
        super().__init__(daemon=True)
        self.pids = pids
        self.exited_ns = None
        self.start()

    def run(self):
        while any(os.path.exists(f"/proc/{pid}") for pid in self.pids):
            time.sleep(0.05)
        self.exited_ns = now_ns()


def listen_overflows(path="/proc/net/netstat"):
    """Connections the kernel turned away so far because a listen queue was
    full (TcpExt ListenOverflows, every socket of this network namespace):
    their clients wait for a SYN retransmit (1 s, then 3 s, 7 s...)."""
    with open(path) as f:
        return parse_netstat(f.read())["TcpExt"]["ListenOverflows"]


def parse_netstat(text):
    """/proc/net/netstat as {prefix: {name: value}} (each prefix a line of
    names, then a line of values)."""
    lines = [line.split() for line in text.splitlines() if line.strip()]
    table = {}
    for names, values in zip(lines[::2], lines[1::2]):
        table[names[0].rstrip(":")] = dict(zip(names[1:], map(int, values[1:])))
    return table


def room_lasts(client, rooms):
    """{room: its newest id} as Redis holds it (the post script's `last` key)."""
    keys = Rooms(client, Settings())
    rooms = sorted(rooms)
    return {room: int(v or 0) for room, v in zip(rooms, client.mget([keys.key(r, "last") for r in rooms]))}


def figures(cfg, t0, replies, reports, newest, samples, percentile):
    """The scenario's figures from the client processes' answers and the CPU samples
    (before the SIGHUP, once every client resumed, once the rooms were quiet)."""
    before, resumed, after = samples
    workers = cfg.workers
    since = sorted((t - t0) / 1e9 for r in replies for t in r["resumed_ns"])
    dropped = sorted((t - t0) / 1e9 for r in replies for t in r["dropped_ns"])
    joins = len(since)
    totals, closes, drops = Counter(), Counter(), Counter()
    for r in reports:
        totals.update(r["totals"])
        closes.update({str(k): v for k, v in r["closes"].items()})
    for r in replies:
        drops.update(r["drops"])
    phases = {}  # where a resume's time went, p50 and p99 of each part
    for i, phase in enumerate(("connect", "join", "delivery")):
        ms = sorted(p[i] / 1e3 for r in replies for p in r["phases"])
        phases.update({f"{phase}_p50_ms": percentile(ms, 0.5), f"{phase}_p99_ms": percentile(ms, 0.99)})
    missed = sum(1 for r in reports for room, last in r["last_ids"] if last != newest.get(room))
    all_s = since[-1] if since else None
    storm_s = (resumed.t - before.t) / 1e9
    window_s = (after.t - before.t) / 1e9
    server_cpu = after.server - before.server
    parts = {"new": after.new - before.new, "master": after.master - before.master,
             "old": after.reaped - before.reaped + after.old - before.old}
    per_join = {name: cpu * 1e3 / joins if joins else None for name, cpu in parts.items()}
    return {
        **phases,
        "clients": cfg.storm_clients, "rooms": cfg.storm_clients // ROOM_SIZE, "workers": workers,
        "somaxconn": read_somaxconn(),  # the server's listen queue (its default CHAT_BACKLOG)
        "listen_overflows": resumed.overflows - before.overflows,
        "joins": joins, "not_resumed": sum(r["not_resumed"] for r in replies),
        "dropped_first_s": dropped[0] if dropped else None,
        "dropped_last_s": dropped[-1] if dropped else None,
        "resumed_first_s": since[0] if since else None,
        "resumed_p50_s": percentile(since, 0.5), "resumed_p99_s": percentile(since, 0.99),
        "all_resumed_s": all_s,
        "joins_per_s_per_worker": joins / all_s / workers if all_s else 0,
        "joins_per_s_per_worker_serving": (joins / (since[-1] - since[0]) / workers
                                           if joins > 1 and since[-1] > since[0] else None),
        "joins_per_s_per_worker_busiest": busiest_second(since) / workers,
        "reconnects": sum(r["attempts"] for r in replies), "refused": dict(drops),
        "events": totals["events"], "gaps": totals["gaps"], "repeats": totals["repeats"],
        "missed": missed, "error_frames": totals["error_frames"], "close_codes": dict(closes),
        "open_at_end": sum(r["open"] for r in reports),
        "srv_cpu_s": server_cpu, "cpu_window_s": window_s,
        "srv_cpu_ms_per_join": server_cpu * 1e3 / joins if joins else None,
        "new_cpu_ms_per_join": per_join["new"], "old_cpu_ms_per_join": per_join["old"],
        "master_cpu_ms_per_join": per_join["master"],
        "redis_cpu_ms_per_join": (after.redis - before.redis) * 1e3 / joins if joins else None,
        "storm_s": storm_s,
        "srv_cpu_pct": 100 * (resumed.server - before.server) / storm_s,
        "redis_cpu_pct": 100 * (resumed.redis - before.redis) / storm_s,
        "gen_cpu_pct": 100 * (resumed.clients - before.clients) / storm_s,
        "other_cpu_pct": 100 * ((resumed.busy - before.busy) - (resumed.server - before.server)
                                - (resumed.redis - before.redis)
                                - (resumed.clients - before.clients)) / storm_s,
    }


def busiest_second(times):
    """The most of these (ascending, in seconds) within any one second."""
    most, first = 0, 0
    for last, t in enumerate(times):
        while t - times[first] > 1.0:
            first += 1
        most = max(most, last - first + 1)
    return most


def verdict(r):
    """Whether the storm met the target: every client resumed, nothing missed or
    repeated, at least TARGET_JOINS joins a second per worker."""
    return (r["not_resumed"] == 0 and not r["gaps"] and not r["repeats"] and not r["missed"]
            and r["joins_per_s_per_worker"] >= TARGET_JOINS)


def log(r):
    """The run's line on stderr, with its verdict."""
    print(f"  storm: {r['joins']:,} of {r['clients']:,} resumed, the last after "
          f"{r['all_resumed_s'] or float('nan'):.2f} s (first {r['resumed_first_s'] or float('nan'):.2f} s): "
          f"{r['joins_per_s_per_worker']:,.0f} joins/s per worker; server "
          f"{r['srv_cpu_ms_per_join'] or float('nan'):.2f} ms CPU per join; gaps {r['gaps']}, "
          f"repeats {r['repeats']}, missed {r['missed']}: "
          f"{'PASS' if verdict(r) else 'FAIL'} (target {TARGET_JOINS:,} joins/s per worker)",
          file=sys.stderr, flush=True)


HEADLINES = [
    ("clients / rooms / workers", ("clients", "rooms", "workers"), "{:,.0f}"),
    ("listen queue: net.core.somaxconn, the server's default backlog", "somaxconn", "{:,.0f}"),
    ("connections the listen queue turned away (TcpExt ListenOverflows)", "listen_overflows",
     "{:,.0f}"),
    ("resumed / not resumed", ("joins", "not_resumed"), "{:,.0f}"),
    ("every client resumed after the restart (s)", "all_resumed_s", "{:.2f}"),
    ("first / p50 / p99 resumed (s)", ("resumed_first_s", "resumed_p50_s", "resumed_p99_s"), "{:.2f}"),
    ("joins/s per worker (clients / time / workers)", "joins_per_s_per_worker", "{:,.0f}"),
    ("joins/s per worker from the first resume / in the busiest second",
     ("joins_per_s_per_worker_serving", "joins_per_s_per_worker_busiest"), "{:,.0f}"),
    ("a resume, p50 / p99 (ms): connect to 101", ("connect_p50_ms", "connect_p99_ms"), "{:,.0f}"),
    ("  101 to own join / the join's delivery", ("join_p50_ms", "join_p99_ms", "delivery_p50_ms",
                                                "delivery_p99_ms"), "{:,.0f}"),
    ("server CPU per join (ms)", "srv_cpu_ms_per_join", "{:.2f}"),
    ("of it: new workers / old workers / master (ms)",
     ("new_cpu_ms_per_join", "old_cpu_ms_per_join", "master_cpu_ms_per_join"), "{:.2f}"),
    ("new workers less their start, per join (ms)", "new_less_start_cpu_ms_per_join", "{:.2f}"),
    ("joins/s that allows a worker with a core of its own", "joins_per_s_per_core",
     "{:,.0f}"),
    ("a worker's start (s of CPU) / the old workers gone after (s)",
     ("start_cpu_s", "old_exited_s"), "{:.2f}"),
    ("redis CPU per join (ms)", "redis_cpu_ms_per_join", "{:.3f}"),
    ("gaps / repeats / missed", ("gaps", "repeats", "missed"), "{:.0f}"),
    ("reconnections / refused", ("reconnects", "refused"), "{}"),
    ("% of a core in the storm: server / redis / clients / others",
     ("srv_cpu_pct", "redis_cpu_pct", "gen_cpu_pct", "other_cpu_pct"), "{:.0f}"),
]
VERDICT = (f"target: >= {TARGET_JOINS:,} joins/s per worker, nothing missed", verdict)
