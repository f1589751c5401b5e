"""Scenario `rooms`: many small rooms, this server and Flask-SocketIO side by side.

10,000 WebSocket clients in 2,000 rooms of 5, one sender per room, every room
posting one message a second (2,000 posts/s, 10,000 deliveries/s) for 10 s,
against two servers started together, each with 2 gevent workers and a
redis-server of its own:

- this chat: `gunicorn -c gunicorn.conf.py wsgi:app` (bench/servers.py);
- Flask-SocketIO: bench/peers/socketio_chat.py under `gunicorn -k gevent`,
  its Redis as the message queue, from the virtualenv bench/.peer-venv
  (created and filled from PyPI on first use: PEER_REQUIREMENTS).

wsbench (an independent Go load generator: `WSBENCH`, else `wsbench` on the
PATH) drives both, one after the other, in an order that alternates from run
to run: `-proto chat` and `-proto socketio` with `-rooms`, which counts every
delivery per room (lost, duplicated, out of order, from another room). It
brings its 10,000 clients, measures one step and closes them. Its progress
lines on stderr mark the step, and the Redis CPU (`INFO cpu`) and the
machine's are sampled at those marks; the server CPU (the gunicorn tree, /proc)
is wsbench's own, over the send window and the drain. Then, as a check, the
project's own client processes (client.py) run the same step against the
chat, each receiver accounted against its own room's sender (client.py's WsLoop).
"""

import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.servers import PROJECT

from .archive import redis_cpu
from .client import WsLoop
from .servers import Gunicorn, Redis, machine_busy, wait_idle_machine

FULL = {"clients": 10_000, "rooms": 2_000, "duration_s": 10.0}   # one post per room per second
QUICK = {"clients": 200, "rooms": 40, "duration_s": 2.0}         # --quick: checks the scenario
P99_BOUND_MS = 100.0            # target: p99 at most this
CPU_RATIO_BOUND = 0.25          # target: this server's CPU per delivery over Flask-SocketIO's
DRAIN_S = 5                     # after the send window, time for every delivery to arrive
WSBENCH_MARGIN_S = 180          # wsbench's connect, settle and drain fit in this, besides the window
PEER_VENV = PROJECT / "bench" / ".peer-venv"    # git-ignored; made on first use
PEER_APP = PROJECT / "bench" / "peers"          # socketio_chat.py, the peer's app
PEER_REQUIREMENTS = (
    "flask-socketio>=5.5,<6",   # the peer; brings python-socketio, python-engineio, Flask and
                                # simple-websocket (engineio's WebSocket under gevent workers)
    "gunicorn[gevent]>=27,<28",  # the server and its gevent worker, as this chat's
    "redis[hiredis]>=5",        # the message queue's client; hiredis parses replies in C, as here
)
PEER_WORKER_CONNECTIONS = 20_000  # gunicorn's default of 1,000 per worker is too few
SERVERS = {  # name: wsbench's -proto and URL (port to fill in; wsbench fills in {room})
    "chat": ("chat", "ws://127.0.0.1:{port}/websocket/room/socket?room={{room}}"),
    "socketio": ("socketio", "ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket&room={{room}}"),
}
LABELS = {"chat": "chat", "socketio": "Flask-SocketIO"}
STEP_STARTS = re.compile(r"wsbench: step (\d+): ")     # wsbench -v: step N is about to start
STEP_ENDED = re.compile(r"wsbench: step (\d+) rate ")  # wsbench -v -find-max: step N and its drain are over
_runs = itertools.count()       # which run of this process: the order alternates


def rooms(cfg, logdir):
    """Scenario 8: each server measured once by wsbench (the order alternates from run
    to run), then the chat once more by the project's own clients."""
    sizes = QUICK if cfg.quick else FULL
    wsbench = os.environ.get("WSBENCH") or shutil.which("wsbench")
    if not wsbench:
        print("  rooms: skipped, wsbench not found (put it on the PATH or set WSBENCH)",
              file=sys.stderr, flush=True)
        return {"skipped": "wsbench not found"}
    order = ("chat", "socketio") if next(_runs) % 2 == 0 else ("socketio", "chat")
    from .scenarios import Servers   # scenarios.py imports this module: import at run time
    with Servers(cfg.workers, logdir) as chat, \
            tempfile.TemporaryDirectory(prefix="bench-redis-") as tmp:
        peer = PeerServers(tmp, cfg.workers, logdir)
        try:
            everyone = (chat, peer)
            result = {"order": list(order), **sizes}
            for name in order:
                servers = chat if name == "chat" else peer
                result[name] = undisturbed(
                    lambda: measure(wsbench, name, servers, sizes, cfg, logdir), everyone, cfg)
            result["pool"] = undisturbed(lambda: pool_check(cfg, chat, sizes), everyone, cfg)
        finally:
            peer.stop()
    result["cpu_ratio"] = cpu_ratio(result)
    return result


class PeerGunicorn(Gunicorn):
    """Flask-SocketIO's peer under gunicorn with `workers` gevent workers, logging to
    socketio-<port>.log; up once every worker answers /healthz."""

    def start(self):
        self.log_path = self.log_path.with_name(f"socketio-{self.port}.log")
        self._log = open(self.log_path, "ab")
        return self._spawn(
            [str(peer_venv() / "bin" / "gunicorn"), "-k", "gevent", "-w", self.env["WEB_CONCURRENCY"],
             "--worker-connections", str(PEER_WORKER_CONNECTIONS), "-b", f"127.0.0.1:{self.port}",
             "socketio_chat:app"],
            # in bench/peers: not the chat's gunicorn.conf.py, which gunicorn reads from its cwd
            self._healthy, cwd=PEER_APP, env=self.env, stdout=self._log, stderr=subprocess.STDOUT)


class PeerServers:
    """The peer's redis-server (the message queue) and gunicorn, as Servers has the chat's."""

    def __init__(self, workdir, workers, logdir):
        self.redis = Redis(workdir)
        try:
            self.gunicorn = PeerGunicorn(self.redis.url, workers, logdir)
        except BaseException:
            self.redis.stop()
            raise
        self.tree, self.port = self.gunicorn.tree, self.gunicorn.port

    def stop(self):
        try:
            self.gunicorn.stop()
        finally:
            self.redis.stop()


def peer_venv():
    """bench/.peer-venv with PEER_REQUIREMENTS installed (from PyPI, the first time)."""
    stamp = PEER_VENV / ".installed"
    wanted = "\n".join(PEER_REQUIREMENTS) + "\n"
    if not stamp.exists() or stamp.read_text() != wanted:
        print(f"  rooms: installing Flask-SocketIO into {PEER_VENV.relative_to(PROJECT)} "
              "(first use)", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True)
        subprocess.run([str(PEER_VENV / "bin" / "python"), "-m", "pip", "install", "-q",
                        *PEER_REQUIREMENTS], check=True)
        stamp.write_text(wanted)
    return PEER_VENV


# --- one server under wsbench ---------------------------------------------------------


def undisturbed(measurement, everyone, cfg):
    """measurement() once every server is quiet; again, at most cfg.retries times, while
    other processes used more than DISTURBED_PCT of a core during it."""
    from .scenarios import DISTURBED_PCT, RETRY_QUIET_S
    retry = 0
    while True:
        quiet(everyone, cfg)
        r = measurement()
        r["retried"] = retry
        if r["other_cpu_pct"] <= DISTURBED_PCT or retry == cfg.retries:
            return r
        retry += 1
        print(f"  disturbed (other processes used {r['other_cpu_pct']:.0f} % of a core): "
              "again", file=sys.stderr, flush=True)
        wait_idle_machine(RETRY_QUIET_S)


def quiet(everyone, cfg):
    """Waits until every server is idle (an overloaded one works through its backlog
    long after its clients left), then, with --wait-idle, for a quiet machine."""
    from .scenarios import wait_idle
    for servers in everyone:
        wait_idle(servers)
    if cfg.wait_idle:
        wait_idle_machine(cfg.wait_idle, exclude=[pid for s in everyone for pid in own_pids(s)])


def own_pids(servers):
    """The server tree's pids and its Redis's (a server without Redis has none)."""
    return servers.tree.pids() + (servers.redis.tree.pids() if servers.redis else [])


def measure(wsbench, name, servers, sizes, cfg, logdir):
    """One wsbench run against `servers`; its figures."""
    proto, url = SERVERS[name]
    rate = sizes["rooms"]          # one post per room per second
    w, marks = run_wsbench(wsbench, name, LABELS[name], servers, [
        "-proto", proto, "-url", url.format(port=servers.port),
        "-rooms", str(sizes["rooms"]), "-clients", str(sizes["clients"]),
        "-senders", str(sizes["rooms"]), "-rate", str(rate),
        "-step-duration", f"{sizes['duration_s']}s", "-timeout", f"{DRAIN_S}s",
        "-connect-rate", str(cfg.connect_rate),
        "-find-max", "-max-steps", "1", "-p99-ms", str(P99_BOUND_MS)], logdir)  # one step, judged
    figures = wsbench_figures(w, marks[1])
    log_figures(LABELS[name] + " (wsbench)", figures)
    return figures


def run_wsbench(wsbench, tag, label, servers, args, logdir):
    """wsbench `args` -find-max ... against `servers` (with -server-pid, -json, -v), its
    JSON and log kept as <logdir>/wsbench-<tag>-<port>-<time>.json and .log.

    Returns (its JSON, {step: {"start": sample, "end": sample}}): every step's CPU
    samples, taken when its progress lines mark its start and its end (after the drain).
    """
    args = [wsbench, *args, "-server-pid", str(servers.tree.root), "-json", "-v"]
    stem = logdir / f"wsbench-{tag}-{servers.port}-{time.strftime('%H%M%S')}"
    marks = {}
    with open(f"{stem}.json", "wb") as out, open(f"{stem}.log", "w", buffering=1) as log:
        log.write(" ".join(args) + "\n")
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.PIPE, text=True)
        try:
            for line in proc.stderr:
                log.write(line)
                if m := STEP_STARTS.match(line):
                    marks.setdefault(int(m[1]), {})["start"] = sample(servers)
                elif m := STEP_ENDED.match(line):
                    marks.setdefault(int(m[1]), {})["end"] = sample(servers)
            proc.wait(timeout=WSBENCH_MARGIN_S)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    w = json.loads(Path(f"{stem}.json").read_text()) if proc.returncode == 0 else None
    if w is None or not w["steps"] or any(len(marks.get(s["step"], ())) != 2 for s in w["steps"]):
        raise RuntimeError(f"wsbench against {label} exited with {proc.returncode} "
                           f"before its steps ended; see {stem}.log")
    return w, marks


def sample(servers):
    """(time, machine's busy CPU s, server tree's CPU s, Redis's CPU s or None) now."""
    return (time.monotonic(), machine_busy(), servers.tree.sample()[0],
            redis_cpu(servers.redis.client) if servers.redis else None)


def wsbench_figures(w, marks):
    """The scenario's figures from wsbench's JSON and the CPU samples around its step
    (the Redis figures are None for a server without Redis)."""
    (t0, busy0, srv0, redis0), (t1, busy1, srv1, redis1) = marks["start"], marks["end"]
    window = t1 - t0
    redis = redis1 - redis0 if redis0 is not None else None
    return {
        "clients": w["clients"], "ready": w["ready"], "failed": w["failed"],
        "connect_s": w["connect_s"], "sent": w["sent"], "send_rate": w["send_rate"],
        "send_lag_max_ms": w["send_lag_max_ms"], "expected": w["expected"],
        "delivered": w["delivered"], "lost": w["lost"], "duplicates": w["duplicates"],
        "out_of_order": w["out_of_order"], "cross_room": w["cross_room"],
        "rooms_with_loss": w["rooms_with_loss"], "disconnects": w["disconnects_total"],
        "server_errors": w["server_errors"], "id_violations": w["chat_id_violations"],
        "id_gaps": w["chat_id_gaps"] if w["proto"] == "chat" else 0,
        "deliveries_per_s": w["delivered_per_s"], "drain_s": w["drain_s"],
        "latency_p50_ms": w["latency_p50_ms"], "latency_p90_ms": w["latency_p90_ms"],
        "latency_p99_ms": w["latency_p99_ms"], "latency_p999_ms": w["latency_p999_ms"],
        "latency_max_ms": w["latency_max_ms"],
        "srv_cpu_ms_per_1k": w.get("server_cpu_ms_per_1k_delivered"),
        "srv_cpu_pct": w.get("server_cpu_pct"),
        "srv_rss_kb_per_client": w.get("server_rss_kb_per_client"),
        "redis_cpu_ms_per_1k_posts": redis * 1e6 / w["sent"] if w["sent"] and redis is not None
        else None,
        "redis_cpu_pct": 100 * redis / window if redis is not None else None,
        "gen_cpu_pct": w["gen_cpu_pct"],
        "other_cpu_pct": 100 * (busy1 - busy0 - (srv1 - srv0) - (redis or 0) - w["gen_cpu_s"])
        / window,
        "cpu_window_s": window, "pass": w.get("pass"), "reason": w.get("reason"),
    }


def problems(r):
    """Deliveries that went wrong: lost, duplicated, out of order, from another room,
    missed in the id chain, to a client that was cut off, or never connected."""
    keys = ("lost", "duplicates", "out_of_order", "cross_room", "disconnects", "id_gaps",
            "id_violations", "server_errors")
    return sum(max(0, r.get(k) or 0) for k in keys) + (r["clients"] - r["ready"])


def cpu_ratio(result):
    """This chat's server CPU per delivery over Flask-SocketIO's (None if either is missing)."""
    chat, peer = result["chat"]["srv_cpu_ms_per_1k"], result["socketio"]["srv_cpu_ms_per_1k"]
    return chat / peer if chat and peer else None


def log_figures(label, r):
    """One progress line of a server's figures (without Redis's when it has none)."""
    has_redis = r["redis_cpu_pct"] is not None
    print(f"  {label}: {r['sent']:,} posts, {r['delivered']:,} of {r['expected']:,} delivered, "
          f"p50 {r['latency_p50_ms']:.1f} ms, p99 {r['latency_p99_ms']:.1f} ms, "
          f"{problems(r)} problems; server {_or_nan(r['srv_cpu_ms_per_1k']):.2f} ms CPU "
          f"per 1k deliveries" + (f", redis {_or_nan(r['redis_cpu_ms_per_1k_posts']):.2f} ms "
                                  "per 1k posts" if has_redis else "") +
          f"; % of a core: server {_or_nan(r['srv_cpu_pct']):.0f}, " +
          (f"redis {r['redis_cpu_pct']:.0f}, " if has_redis else "") +
          f"generator {r['gen_cpu_pct']:.0f}, others {r['other_cpu_pct']:.0f}",
          file=sys.stderr, flush=True)


def _or_nan(value):
    return float("nan") if value is None else value


# --- the check: the project's own clients ---------------------------------------------


def pool_check(cfg, servers, sizes):
    """The same step against the chat, driven by client.py's processes (WsLoop checks
    each receiver against its own room's sender)."""
    from .scenarios import ClientPool, connect_clients, run_step, settle, wait_quiet
    with ClientPool(WsLoop, cfg.procs, servers.port) as pool:
        connect = connect_clients(pool, servers.port, sizes["clients"], sizes["rooms"],
                                  cfg.connect_rate, rooms=[f"pool{k}" for k in range(sizes["rooms"])],
                                  prefix="p")
        wait_quiet(pool)
        settle(pool)
        if cfg.wait_idle:
            wait_idle_machine(cfg.wait_idle, exclude=servers.tree.pids() + pool.pids())
        r = run_step(servers, pool, 1, sizes["rooms"], sizes["duration_s"], sizes["rooms"],
                     P99_BOUND_MS)
    redis = r["redis_cpu_pct"] / 100 * r["cpu_window_s"]   # /proc's, over run_step's window
    figures = {**{k: r[k] for k in (
        "sent", "delivered", "lost", "duplicates", "out_of_order", "id_violations", "disconnects",
        "latency_p50_ms", "latency_p99_ms", "latency_max_ms", "srv_cpu_ms_per_1k", "srv_cpu_pct",
        "redis_cpu_pct", "gen_cpu_pct", "other_cpu_pct")},
        "clients": connect["clients"], "ready": connect["ready"], "server_errors": r["error_frames"],
        "expected": r["delivered"] + r["lost"] - r["duplicates"],
        "redis_cpu_ms_per_1k_posts": redis * 1e6 / r["sent"] if r["sent"] else None}
    log_figures("chat (the project's clients)", figures)
    return figures


# --- the summary (report.py) ----------------------------------------------------------


def _verdict(test):
    """A verdict row's text: "yes", "NO", or "n/a" when a figure is missing."""
    def row(r):
        try:
            return "yes" if test(r) else "NO"
        except (KeyError, TypeError):
            return "n/a"
    return row


def _both(label, path, fmt, labels=LABELS):
    """Two headline rows: the figure of this chat and of its peer (labels: name -> label)."""
    paths = path if isinstance(path, tuple) else (path,)
    return [(f"{side}: {label}", tuple(f"{name}.{p}" for p in paths), fmt)
            for name, side in labels.items()]


HEADLINES = [
    ("clients / rooms (one sender each, a post a second)", ("clients", "rooms"), "{:,.0f}"),
    *_both("latency p50 / p99 (ms)", ("latency_p50_ms", "latency_p99_ms"), "{:.1f}"),
    *_both("lost / dup / out of order / disconnects",
           ("lost", "duplicates", "out_of_order", "disconnects"), "{:.0f}"),
    *_both("server CPU per 1k deliveries (ms)", "srv_cpu_ms_per_1k", "{:.2f}"),
    *_both("Redis CPU per 1k posts (ms)", "redis_cpu_ms_per_1k_posts", "{:.2f}"),
    *_both("% of a core: server / Redis / generator / others",
           ("srv_cpu_pct", "redis_cpu_pct", "gen_cpu_pct", "other_cpu_pct"), "{:.0f}"),
    ("chat ÷ Flask-SocketIO, server CPU per delivery", "cpu_ratio", "{:.3f}"),
    ("check, chat with the project's clients: p50 / p99 (ms)",
     ("pool.latency_p50_ms", "pool.latency_p99_ms"), "{:.1f}"),
    ("check: lost / dup / out of order / disconnects",
     ("pool.lost", "pool.duplicates", "pool.out_of_order", "pool.disconnects"), "{:.0f}"),
    ("check: server CPU per 1k deliveries / Redis per 1k posts (ms)",
     ("pool.srv_cpu_ms_per_1k", "pool.redis_cpu_ms_per_1k_posts"), "{:.2f}"),
    ("measurements run again, disturbed: chat / Flask-SocketIO / check",
     ("chat.retried", "socketio.retried", "pool.retried"), "{:.0f}"),
    ("load average (1 min) after the run", "load", "{:.2f}"),
    (f"target: chat's p99 <= {P99_BOUND_MS:.0f} ms",
     _verdict(lambda r: r["chat"]["latency_p99_ms"] <= P99_BOUND_MS), "{}"),
    ("target: chat loses nothing (lost, dup, order, id chain, disconnects)",
     _verdict(lambda r: problems(r["chat"]) == 0), "{}"),
    ("target: chat's CPU per delivery <= 1/4 of Flask-SocketIO's",
     _verdict(lambda r: r["cpu_ratio"] <= CPU_RATIO_BOUND), "{}"),
]
