"""Scenario `tail`: one room of 1,000, this chat beside gorilla/websocket's chat example.

The fan-out clients (--clients, 1,000, of them --senders, 50, sending) in one
room, against two servers started together:

- this chat: `gunicorn -c gunicorn.conf.py wsgi:app`, 2 gevent workers, one
  redis-server (bench/servers.py, as the other scenarios start them);
- gorilla/websocket's examples/chat, built by the user (bench/README.md), its
  binary's path in `GORILLA_CHAT`, run from its own directory (it serves
  home.html from there) with `-addr 127.0.0.1:<free port>`.

wsbench (rooms.py's runner) drives both, `-proto chat` and `-proto gorilla`,
in an order that alternates from run to run: first a steady window
(--steady-rate for --steady-duration: p50/p99, server CPU per 1,000
deliveries, wsbench's `-server-pid` reading), then find-max (from
--start-rate, ×--step-factor per --step-duration step, until p99 passes
--p99-ms or a delivery goes wrong: the best deliveries/s). Before the servers
start, the `floor` scenario (floor.py) measures the CPU a bare loop spends per
1,000 loopback writes with the same clients and rate.

Ratios per run: chat ÷ gorilla find-max deliveries/s, chat ÷ gorilla steady
p99, chat's steady CPU ÷ the floor. Three targets: find-max at least twice
gorilla's in every run, steady p99 at most gorilla's, steady CPU at most 1.25×
the floor.
"""

import itertools
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.servers import Process, port_open

from .floor import floor
from .rooms import DRAIN_S, _both, _verdict, log_figures, run_wsbench, undisturbed, wsbench_figures
from .servers import ProcTree

FINDMAX_RATIO_BOUND = 2.0   # target: chat's find-max deliveries/s at least twice gorilla's, every run
P99_RATIO_BOUND = 1.0       # target: chat's steady p99 at most gorilla's
FLOOR_RATIO_BOUND = 1.25    # target: chat's steady CPU per delivery at most 1.25x the floor's per write
SERVERS = {  # name: wsbench's -proto and URL (port to fill in)
    "chat": ("chat", "ws://127.0.0.1:{port}/websocket/room/socket?room=bench"),
    "gorilla": ("gorilla", "ws://127.0.0.1:{port}/ws"),
}
LABELS = {"chat": "chat", "gorilla": "gorilla"}
_runs = itertools.count()   # which run of this process: the order alternates


def tail(cfg, logdir):
    """Scenario 9: the floor, then each server's steady window and find-max by wsbench
    (the order of the servers alternates from run to run)."""
    wsbench = os.environ.get("WSBENCH") or shutil.which("wsbench")
    gorilla = os.environ.get("GORILLA_CHAT")
    skipped = (
        "wsbench not found (put it on the PATH or set WSBENCH)" if not wsbench else
        "gorilla's chat not given (set GORILLA_CHAT to its binary; bench/README.md builds it)"
        if not gorilla else
        f"GORILLA_CHAT={gorilla} is not an executable file"
        if not (os.path.isfile(gorilla) and os.access(gorilla, os.X_OK)) else None)
    if skipped:
        print(f"  tail: skipped, {skipped}", file=sys.stderr, flush=True)
        return {"skipped": skipped}
    order = ("chat", "gorilla") if next(_runs) % 2 == 0 else ("gorilla", "chat")
    result = {"order": list(order), "clients": cfg.clients, "senders": cfg.senders,
              "workers": cfg.workers, "steady_rate": cfg.steady_rate}
    result["floor"] = floor(cfg, logdir)
    print(f"  floor: {result['floor']['cpu_ms_per_1k']:.2f} ms CPU per 1k writes",
          file=sys.stderr, flush=True)
    from .scenarios import Servers   # scenarios.py imports this module: import at run time
    with Servers(cfg.workers, logdir) as chat, GorillaChat(gorilla, logdir) as peer:
        everyone = (chat, peer)
        sides = {"chat": chat, "gorilla": peer}
        for name in order:
            result.setdefault(name, {})["steady"] = undisturbed(
                lambda: steady(wsbench, name, sides[name], cfg, logdir), everyone, cfg)
        for name in order:
            result[name]["findmax"] = undisturbed(
                lambda: find_max(wsbench, name, sides[name], cfg, logdir), everyone, cfg)
    return tail_figures(result)


class GorillaChat(Process):
    """gorilla/websocket's chat example on a free port, from its binary's directory,
    logging to gorilla-<port>.log; up once the port answers. Has no Redis."""

    name = "gorilla chat"
    redis = None

    def __init__(self, binary, logdir):
        super().__init__()
        binary = Path(binary).resolve()
        self.log_path = Path(logdir) / f"gorilla-{self.port}.log"
        self._log = open(self.log_path, "ab")
        try:
            self._spawn([str(binary), "-addr", f"127.0.0.1:{self.port}"],
                        lambda: port_open(self.port), cwd=binary.parent,
                        stdout=self._log, stderr=subprocess.STDOUT)
        except BaseException:
            self._log.close()
            raise
        self.tree = ProcTree(self.process.pid)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def kill(self):
        super().kill()
        self._log.close()


def wsbench_args(name, servers, cfg):
    """wsbench's arguments for the one room on `servers`, as the fan-out scenarios size it."""
    proto, url = SERVERS[name]
    return ["-proto", proto, "-url", url.format(port=servers.port),
            "-clients", str(cfg.clients), "-senders", str(cfg.senders),
            "-timeout", f"{DRAIN_S}s", "-connect-rate", str(cfg.connect_rate),
            "-p99-ms", str(cfg.p99_ms)]


def steady(wsbench, name, servers, cfg, logdir):
    """One judged window at cfg.steady_rate for cfg.steady_duration; its figures."""
    w, marks = run_wsbench(wsbench, f"{name}-steady", LABELS[name], servers, [
        *wsbench_args(name, servers, cfg), "-rate", str(cfg.steady_rate),
        "-step-duration", f"{cfg.steady_duration}s", "-find-max", "-max-steps", "1"], logdir)
    figures = wsbench_figures(w, marks[1])
    log_figures(f"{LABELS[name]}, steady", figures)
    return figures


def find_max(wsbench, name, servers, cfg, logdir):
    """wsbench -find-max from cfg.start_rate: the best step's figures and each step's.

    Its other_cpu_pct, which undisturbed judges, is the other processes' CPU during
    the failed step that ended the search (0 when it ended with a pass: a disturbance
    before then only slowed steps that passed anyway)."""
    w, marks = run_wsbench(wsbench, f"{name}-findmax", LABELS[name], servers, [
        *wsbench_args(name, servers, cfg), "-rate", str(cfg.start_rate),
        "-step-factor", str(cfg.step_factor), "-step-duration", f"{cfg.step_duration}s",
        "-max-steps", str(cfg.max_steps), "-find-max"], logdir)
    steps = [wsbench_figures({**w, **s}, marks[s["step"]]) | {"step": s["step"],
                                                               "rate": s["target_rate"]}
             for s in w["steps"]]
    for s in steps:
        log_figures(f"{LABELS[name]}, find-max step {s['step']} at {s['rate']:.0f} msg/s "
                    f"({'pass' if s['pass'] else 'FAIL: ' + str(s['reason'])})", s)
    passed = [s for s in steps if s["pass"]]
    fm = w["find_max"]
    print(f"  {LABELS[name]}: find-max {fm['best_delivered_per_s']:,.0f} deliveries/s at "
          f"{fm['best_rate']:.0f} msg/s; stopped by {fm['stop_reason']}", file=sys.stderr, flush=True)
    return {"deliveries_per_s": fm["best_delivered_per_s"], "best_rate": fm["best_rate"],
            "stop_reason": fm["stop_reason"], "best": passed[-1] if passed else None,
            "steps": steps,
            "other_cpu_pct": 0.0 if steps[-1]["pass"] else steps[-1]["other_cpu_pct"]}


# --- the figures (pure: tests/unit/test_bench_tail.py) -------------------------------


def ratio(numerator, denominator):
    """numerator / denominator, None when either is missing or the denominator is 0."""
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def tail_figures(result):
    """Adds a run's ratios: chat ÷ gorilla find-max deliveries/s and steady p99, and each
    server's steady CPU per 1,000 deliveries ÷ the floor's per 1,000 writes."""
    chat, peer, bare = result["chat"], result["gorilla"], result["floor"]["cpu_ms_per_1k"]
    result["findmax_ratio"] = ratio(chat["findmax"]["deliveries_per_s"],
                                    peer["findmax"]["deliveries_per_s"])
    result["p99_ratio"] = ratio(chat["steady"]["latency_p99_ms"], peer["steady"]["latency_p99_ms"])
    result["cpu_floor_ratio"] = ratio(chat["steady"]["srv_cpu_ms_per_1k"], bare)
    result["gorilla_cpu_floor_ratio"] = ratio(peer["steady"]["srv_cpu_ms_per_1k"], bare)
    return result


def findmax_twice(r):
    """Target: chat's find-max at least FINDMAX_RATIO_BOUND × gorilla's in every run
    (r["each_run"]: the runs; a run without the ratio fails the verdict as n/a)."""
    ratios = [run["findmax_ratio"] for run in r["each_run"]]
    if not ratios or None in ratios:
        raise KeyError("findmax_ratio")
    return all(x >= FINDMAX_RATIO_BOUND for x in ratios)


def each_run(path, fmt):
    """A headline figure: one figure of every run, "a / b / c"."""
    def row(r):
        from .report import get, render
        try:
            return " / ".join(render(get(run, path), fmt) for run in r["each_run"]) or None
        except (KeyError, TypeError, AttributeError):
            return None
    return row


# --- the summary (report.py) ----------------------------------------------------------


HEADLINES = [
    ("clients / senders (one room)", ("clients", "senders"), "{:,.0f}"),
    *[(f"{side}: find-max deliveries/s, each run",
       each_run(f"{name}.findmax.deliveries_per_s", "{:,.0f}"), "{}") for name, side in LABELS.items()],
    *_both("find-max: best rate (msg/s)", "findmax.best_rate", "{:,.0f}", LABELS),
    *_both("find-max best step: p50 / p99 (ms)",
           ("findmax.best.latency_p50_ms", "findmax.best.latency_p99_ms"), "{:.1f}", LABELS),
    *_both("find-max: stopped by", "findmax.stop_reason", "{}", LABELS),
    ("chat ÷ gorilla, find-max deliveries/s, each run", each_run("findmax_ratio", "{:.2f}"), "{}"),
    *_both("steady p50 / p99 (ms)",
           ("steady.latency_p50_ms", "steady.latency_p99_ms"), "{:.1f}", LABELS),
    *_both("steady lost / dup / out of order / disconnects",
           ("steady.lost", "steady.duplicates", "steady.out_of_order", "steady.disconnects"),
           "{:.0f}", LABELS),
    *_both("steady server CPU per 1k deliveries (ms)", "steady.srv_cpu_ms_per_1k", "{:.2f}", LABELS),
    *_both("steady % of a core: server / Redis / generator / others",
           ("steady.srv_cpu_pct", "steady.redis_cpu_pct", "steady.gen_cpu_pct",
            "steady.other_cpu_pct"), "{:.0f}", LABELS),
    ("floor: a bare loop's CPU per 1k writes (ms)", "floor.cpu_ms_per_1k", "{:.2f}"),
    ("chat ÷ gorilla, steady p99", "p99_ratio", "{:.2f}"),
    ("steady CPU ÷ floor: chat / gorilla", ("cpu_floor_ratio", "gorilla_cpu_floor_ratio"), "{:.2f}"),
    ("measurements run again, disturbed: steady chat / gorilla, find-max chat / gorilla",
     ("chat.steady.retried", "gorilla.steady.retried", "chat.findmax.retried",
      "gorilla.findmax.retried"), "{:.0f}"),
    ("load average (1 min) after the run", "load", "{:.2f}"),
    (f"target: chat's find-max >= {FINDMAX_RATIO_BOUND:g}x gorilla's, in every run",
     _verdict(findmax_twice), "{}"),
    ("target: chat's steady p99 <= gorilla's",
     _verdict(lambda r: r["p99_ratio"] <= P99_RATIO_BOUND), "{}"),
    (f"target: chat's steady CPU <= {FLOOR_RATIO_BOUND:g}x the floor",
     _verdict(lambda r: r["cpu_floor_ratio"] <= FLOOR_RATIO_BOUND), "{}"),
]
