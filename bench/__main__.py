"""`python -m bench`: runs the scenarios, prints the summary, writes a JSON file and the plots.

Every output goes to bench/results/<time>/ (git-ignored): results.json, one
plot per scenario, <scenario>.png (plots.py), and the gunicorn logs.

    .venv/bin/python -m bench                      # every scenario once (make bench)
    .venv/bin/python -m bench --scenario fanout --repeat 3
    .venv/bin/python -m bench --quick              # small and short: checks the benchmark itself
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import time

from tests.servers import PROJECT

from . import plots, report
from .scenarios import SCENARIOS
from .servers import IDLE_BUSY_CORES, IDLE_WINDOW_S, wait_idle_machine

CLUSTER_RATE = 500  # cluster: msg/s a shared 2-core machine sustains beside 3 + 3 Redis nodes

RESULTS = PROJECT / "bench" / "results"  # one directory per run (git-ignored)


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--scenario", action="append", choices=list(SCENARIOS),
                   help="run this scenario (repeatable); default: all of them")
    p.add_argument("--repeat", type=int, default=1, help="runs of each scenario; medians are shown")
    p.add_argument("--quick", action="store_true",
                   help="tiny sizes and short steps, to check the benchmark works (not figures)")
    g = p.add_argument_group("fanout and steady (floor: --clients, --steady-rate, --steady-duration; "
                             "tail: all of these but --procs)")
    g.add_argument("--clients", type=int, default=1000, help="WebSocket clients in the room")
    g.add_argument("--senders", type=int, default=50, help="of them, how many send")
    g.add_argument("--workers", type=int, default=2, help="gunicorn workers (WEB_CONCURRENCY)")
    g.add_argument("--procs", type=int, default=2, help="client processes")
    g.add_argument("--start-rate", type=float, default=100, help="find-max: first rate, msg/s")
    g.add_argument("--step-factor", type=float, default=1.5, help="find-max: rate multiplier per step")
    g.add_argument("--step-duration", type=float, default=5, help="find-max: send window per step, s")
    g.add_argument("--max-steps", type=int, default=20, help="find-max: most steps")
    g.add_argument("--p99-ms", type=float, default=200, help="find-max: p99 bound, ms")
    g.add_argument("--retries", type=int, default=2,
                   help="find-max: failed steps that other processes disturbed are run again, "
                        "at most this many times")
    g.add_argument("--steady-rate", type=float, default=100, help="steady: rate, msg/s")
    g.add_argument("--steady-duration", type=float, default=10, help="steady: send window, s")
    g = p.add_argument_group("idle, longpoll, postcost, archive")
    g.add_argument("--connect-rate", type=float, default=1000, help="new connections per second")
    g.add_argument("--idle-clients", type=int, default=10000, help="idle: WebSocket clients")
    g.add_argument("--idle-rooms", type=int, default=100, help="idle: rooms they are spread over")
    g.add_argument("--idle-procs", type=int, default=4, help="idle: client processes")
    g.add_argument("--lp-waiters", type=int, default=10000, help="longpoll: waiters")
    g.add_argument("--lp-procs", type=int, default=4, help="longpoll: client processes")
    g.add_argument("--posts", type=int, default=500, help="postcost: WebSocket posts (+1/5 over HTTP)")
    g.add_argument("--archive-requests", type=int, default=500,
                   help="archive: long polls, and WebSocket resumes, per archive size")
    g = p.add_argument_group("cluster (also: --clients, --senders, --workers, --procs)")
    g.add_argument("--cluster-rooms", type=int, default=6,
                   help="rooms, as many on each of the 3 masters (a multiple of 3)")
    g.add_argument("--cluster-rate", type=float, default=CLUSTER_RATE,
                   help="msg/s over all rooms, on the cluster and on one Redis")
    g.add_argument("--cluster-duration", type=float, default=20,
                   help="send window, s (long enough for CPU ticks of 10 ms to count per post)")
    g.add_argument("--storm-clients", type=int, default=10000, help="storm: WebSocket clients, 5 a room (--workers workers)")
    g.add_argument("--storm-procs", type=int, default=4, help="storm: client processes")
    g = p.add_argument_group("sockets (also: --workers, --connect-rate)")
    g.add_argument("--sockets-clients", type=int, default=100000,
                   help="WebSocket clients wanted; the run makes as many as the open-file limits allow")
    g.add_argument("--sockets-rooms", type=int, default=None,
                   help="rooms they are spread over; default: the clients run / 100")
    g.add_argument("--sockets-procs", type=int, default=4,
                   help="client processes, at least (more when one's open-file limit needs it)")
    p.add_argument("--wait-idle", type=float, default=0, metavar="S",
                   help="before each run, each fan-out step and each cluster window, wait up to "
                        f"S seconds for the machine to be quiet (under {IDLE_BUSY_CORES} busy cores for "
                        f"{IDLE_WINDOW_S:.0f} s, this benchmark's processes aside)")
    args = p.parse_args(argv)
    if args.cluster_rooms % 3 or args.cluster_rooms < 3:
        p.error(f"--cluster-rooms must be a multiple of 3, not {args.cluster_rooms}")
    if args.quick:
        args.clients, args.senders, args.step_duration, args.max_steps = 100, 10, 1, 4
        args.steady_duration, args.idle_clients, args.idle_rooms, args.lp_waiters = 2, 400, 4, 400
        args.posts, args.archive_requests = 100, 50
        args.cluster_rate, args.cluster_duration = 100, 2
        args.storm_clients = 200
        args.sockets_clients = 400
    return args


def machine():
    """Where and on what the figures were taken."""
    model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                  if line.startswith("model name")), "unknown")
    git = subprocess.run(["git", "-C", str(PROJECT), "describe", "--always", "--dirty"],
                         capture_output=True, text=True).stdout.strip()
    return {"cpus": os.cpu_count(), "cpu": model, "load": os.getloadavg(), "server_git": git}


def stop_on_sigterm(signum, frame):
    """SIGTERM unwinds like Ctrl-C, so every server and client process is stopped."""
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv=None):
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    names = args.scenario or list(SCENARIOS)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    logdir = RESULTS / stamp
    logdir.mkdir(parents=True, exist_ok=True)
    info = machine()
    print(f"bench: {', '.join(names)} x{args.repeat} on {info['cpus']} x {info['cpu']}, "
          f"load {info['load'][0]:.2f}; server {info['server_git']}; logs in {logdir}",
          file=sys.stderr, flush=True)
    results, sections = {}, []
    for name in names:
        runs = []
        for i in range(args.repeat):
            waited = time.monotonic()
            cores = wait_idle_machine(args.wait_idle) if args.wait_idle else None
            t0 = time.monotonic()
            print(f"{name} run {i + 1}/{args.repeat}" + (
                f" (waited {t0 - waited:.0f} s for a quiet machine: {cores:.2f} busy cores)"
                if cores is not None else ""), file=sys.stderr, flush=True)
            runs.append(SCENARIOS[name](args, logdir))
            runs[-1]["wall_s"] = time.monotonic() - t0
            runs[-1]["load"] = os.getloadavg()[0]
        results[name] = {"runs": runs, "median": report.median(runs)}
        if name == "fanout":
            for run in runs:
                print(report.steps_table(run["steps"]), file=sys.stderr)
        # the rows see the medians, and every run under "each_run" (tail's "in every run")
        sections.append((name, report.summary(name, {**results[name]["median"], "each_run": runs},
                                              len(runs))))
    out = logdir / "results.json"
    out.write_text(json.dumps({"machine": info, "args": {k: str(v) for k, v in vars(args).items()},
                               "results": results}, indent=1, default=str))
    write_plots(names, results, logdir, args)
    print(report.table(sections))
    print(f"(details: {out})")
    return 0


def write_plots(names, results, logdir, args):
    """Each scenario's plot, once results.json holds the figures: a plot that fails
    is reported, and the others are still drawn."""
    for name in names:
        try:
            path = plots.write(name, results[name]["runs"], logdir, args)
        except Exception as exc:  # the figures are safe in results.json already
            print(f"plot of {name} failed: {exc!r}", file=sys.stderr)
            continue
        if path is not None:
            print(f"plot of {name}: {path}", file=sys.stderr)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("bench: interrupted; every server and client process was stopped", file=sys.stderr)
        sys.exit(130)
