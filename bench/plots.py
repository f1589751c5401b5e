"""One plot per scenario, a PNG in the run's directory: `<scenario>.png`.

Each function draws one scenario's runs (the dicts its scenario function
returns, one per --repeat, as results.json holds them) into `path`; `args`
are the options the runs were made with. Where a figure is one number per
run, each run gets its bar and, with several runs, the median one more;
elsewhere the plot shows the medians over the runs. `write` picks the
scenario's function from PLOTS. matplotlib draws with its Agg backend (no
display needed).
"""

import statistics

from .archive import ARCHIVE_SIZES, FEW, FLAT_FIGURES, FLAT_RATIO, flat
from .report import get
from .rooms import LABELS, P99_BOUND_MS
from .scenarios import ANSWER_BOUND_NS
from .sockets import RSS_BOUND_KB
from .storm import ROOM_SIZE, TARGET_JOINS

ARCHIVE_KINDS = (("lp", "long poll"), ("ws", "WebSocket resume"))  # archive's requests


def write(name, runs, logdir, args):
    """Draws scenario `name`'s runs into logdir/<name>.png. The path, or None when
    the scenario has no plot or none of its runs measured anything (skipped)."""
    runs = [run for run in runs if "skipped" not in run]
    if name not in PLOTS or not runs:
        return None
    path = logdir / f"{name}.png"
    PLOTS[name](runs, path, args)
    return path


# --- the scenarios -------------------------------------------------------------------


def fanout(runs, path, args):
    """p50 and p99 latency against offered rate, one line pair per find-max run."""
    fig, (ax,) = _figure(1, f"Fan-out: latency against offered rate ({args.workers} workers, one Redis)")
    for i, run in enumerate(runs):
        steps = [s for s in run["steps"] if s["latency_p99_ms"] is not None and not s.get("retried")]
        rates = [s["rate"] for s in steps]
        ax.plot(rates, [s["latency_p99_ms"] for s in steps], "o-", color="tab:red",
                alpha=0.8, label=None if i else "p99")
        ax.plot(rates, [s["latency_p50_ms"] for s in steps], "o-", color="tab:blue",
                alpha=0.8, label=None if i else "p50")
    ax.axhline(args.p99_ms, color="gray", linestyle="--", linewidth=1,
               label=f"p99 bound ({args.p99_ms:.0f} ms)")
    ax.set(xscale="log", yscale="log", ylabel="latency, send to receive (ms)",
           xlabel=f"offered rate (messages/s into a room of {args.clients:,} clients)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    _save(fig, path)


def steady(runs, path, args):
    """Latency percentiles and server CPU per 1,000 deliveries, per run."""
    fig, (latency, cpu) = _figure(2, f"Steady: {runs[0]['step']['rate']:,.0f} msg/s into a room of "
                                     f"{runs[0]['connect']['clients']:,} clients ({args.workers} workers)")
    _per_run(latency, runs, {q: f"step.latency_{q}_ms" for q in ("p50", "p90", "p99")})
    latency.set(title="latency, send to receive", ylabel="ms")
    _per_run(cpu, runs, {"server": "step.srv_cpu_ms_per_1k"})
    cpu.set(title="server CPU per 1,000 deliveries", ylabel="ms of CPU")
    _save(fig, path)


def idle(runs, path, args):
    """Server RSS per idle WebSocket client, per run."""
    fig, (ax,) = _figure(1, f"Idle: server RSS per client ({runs[0]['clients']:,} WebSocket "
                            f"clients in {args.idle_rooms:,} rooms, one worker)")
    _per_run(ax, runs, {"RSS": "srv_rss_kb_per_client"})
    ax.set(ylabel="KB per client (RSS after connecting - before)")
    _save(fig, path)


def longpoll(runs, path, args):
    """When the waiters had their answer after the post, per run, beside the bound."""
    fig, (ax,) = _figure(1, f"Long poll: {runs[0]['waiters']:,} waiters on one worker, "
                            "then one post: time to answer them")
    _per_run(ax, runs, {"p50": "answer_p50_ms", "p99": "answer_p99_ms", "last": "all_answered_ms"})
    ax.axhline(ANSWER_BOUND_NS / 1e6, color="gray", linestyle="--", linewidth=1,
               label=f"bound ({ANSWER_BOUND_NS / 1e9:.0f} s)")
    ax.set(yscale="log", ylabel="ms after the post")
    ax.legend()
    _save(fig, path)


def floor(runs, path, args):
    """A bare loop's CPU per 1,000 loopback writes, per run."""
    fig, (ax,) = _figure(1, f"Floor: a bare loop's CPU per 1,000 loopback writes "
                            f"({runs[0]['clients']:,} sockets, {runs[0]['rate']:,.0f} writes/s each)")
    _per_run(ax, runs, {"CPU": "cpu_ms_per_1k"})
    ax.set(ylabel="ms of CPU per 1,000 writes")
    _save(fig, path)


def postcost(runs, path, args):
    """Redis commands per post (medians): the EVALSHA, what its script runs, anything else."""
    fig, (ax,) = _figure(1, f"Post cost: Redis commands per post ({runs[0]['posts']:,} posts "
                            f"over WebSocket and HTTP){_of(runs)}")
    for label, color, counts in (
            ("the post", "tab:blue", {"evalsha": _median(runs, "evalsha_per_post")}),
            ("run by its script", "tab:gray", _median_counts(runs, "in_script_per_post")),
            ("anything else", "tab:red", _median_counts(runs, "other_per_post"))):
        if counts:
            bars = ax.bar([c.upper() for c in counts], list(counts.values()), color=color, label=label)
            ax.bar_label(bars, [f"{v:.3g}" for v in counts.values()], fontsize=7)
    ax.tick_params(axis="x", labelrotation=45)
    ax.set(ylabel="calls per post")
    ax.legend(fontsize=8)
    _save(fig, path)


def archive(runs, path, args):
    """Server CPU, Redis CPU and latency p50 per request against the archive's size, for
    long polls and resumes (medians): flat lines, reading near the newest costs the same."""
    sizes = {str(size): {kind: {figure: _median(runs, f"sizes.{size}.{kind}.{figure}")
                                for figure in FLAT_FIGURES} for kind, _ in ARCHIVE_KINDS}
             for size in ARCHIVE_SIZES}
    ratios, is_flat = flat(sizes)
    fig, axes = _figure(3, f"Archive: a request {FEW} events behind the newest, against the "
                           f"archive's size ({runs[0]['requests']:,} of each kind a size){_of(runs)}: "
                           f"{'flat' if is_flat else 'NOT flat'} (max/min <= {FLAT_RATIO} each)")
    for ax, figure, title in zip(axes, FLAT_FIGURES, ("server CPU per request (ms)",
                                                       "Redis CPU per request (ms)", "latency p50 (ms)")):
        for kind, label in ARCHIVE_KINDS:
            ax.plot(ARCHIVE_SIZES, [sizes[str(size)][kind][figure] for size in ARCHIVE_SIZES], "o-",
                    label=f"{label}, max/min {ratios[f'{kind} {figure}']:.2f}")
        ax.set(xscale="log", title=title, xlabel="events in the archive")
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    _save(fig, path)


def storm(runs, path, args):
    """Clients resumed against the time since the restart (the first, p50, p99 and last
    resume of each run), beside the target rate; server and Redis CPU per join (medians)."""
    r = runs[0]
    fig, (resumed, cpu) = _figure(2, f"Storm: {r['clients']:,} WebSocket clients in rooms of "
                                     f"{ROOM_SIZE} dropped at once by a restart ({r['workers']} workers)")
    for i, run in enumerate(runs):
        joins = run["joins"]
        points = [(t, n) for t, n in ((run["resumed_first_s"], 1), (run["resumed_p50_s"], joins / 2),
                                      (run["resumed_p99_s"], 0.99 * joins), (run["all_resumed_s"], joins))
                  if t is not None]
        if points:
            resumed.plot(*zip(*points), "o-", color="tab:blue", alpha=0.8,
                         label=None if i else "resumed (first, p50, p99, last)")
    rate = TARGET_JOINS * r["workers"]
    resumed.plot([0, r["clients"] / rate], [0, r["clients"]], "--", color="gray",
                 label=f"target: {TARGET_JOINS:,} joins/s per worker")
    resumed.set(xlabel="s after the SIGHUP", ylabel="clients resumed (their own join seen)",
                title=f"{_median(runs, 'joins_per_s_per_worker'):,.0f} joins/s per worker{_of(runs)}")
    resumed.set_xlim(left=0)
    resumed.grid(True, alpha=0.3)
    resumed.legend(fontsize=8)
    parts = {"new workers": "new_cpu_ms_per_join", "old workers": "old_cpu_ms_per_join",
             "master": "master_cpu_ms_per_join", "Redis": "redis_cpu_ms_per_join"}
    _bars(cpu, list(parts), {"ms": [_median(runs, key) for key in parts.values()]})
    cpu.set(title=f"CPU per join (ms){_of(runs)}", ylabel="ms of CPU per join")
    _save(fig, path)


def rooms(runs, path, args):
    """Latency and CPU of this chat and of Flask-SocketIO (medians, log scale), and of
    the chat under the project's own clients (the check)."""
    r = runs[0]
    servers = {"chat": "chat", "socketio": LABELS["socketio"], "pool": "chat, the check"}
    fig, (latency, cpu) = _figure(2, f"Rooms: {r['clients']:,} WebSocket clients in {r['rooms']:,} "
                                     f"rooms, a post a second each{_of(runs)}")
    _bars(latency, list(servers.values()),
          {q: [_median(runs, f"{name}.latency_{q}_ms") for name in servers] for q in ("p50", "p99")})
    latency.axhline(P99_BOUND_MS, color="gray", linestyle="--", linewidth=1,
                    label=f"p99 bound ({P99_BOUND_MS:.0f} ms)")
    latency.set(yscale="log", title="latency, send to receive (ms)", ylabel="ms")
    latency.legend(fontsize=8)
    _bars(cpu, list(servers.values()), {
        "server, per 1,000 deliveries": [_median(runs, f"{name}.srv_cpu_ms_per_1k") for name in servers],
        "Redis, per 1,000 posts": [_median(runs, f"{name}.redis_cpu_ms_per_1k_posts")
                                   for name in servers]})
    cpu.set(yscale="log", title="CPU (ms)", ylabel="ms of CPU")
    _save(fig, path)


def cluster(runs, path, args):
    """One Redis against a 3-master cluster (medians): latency, server CPU per 1,000
    deliveries, each Redis node's CPU per 1,000 posts."""
    r = runs[0]
    fig, (latency, server, redis) = _figure(3, f"Cluster: {r['clients']:,} clients in {r['rooms']} rooms, "
                                               f"{r['rate']:,.0f} msg/s, on one Redis and on a cluster "
                                               f"of 3 masters{_of(runs)}")
    sides = {"single": "one Redis", "cluster": "cluster"}
    _bars(latency, list(sides.values()),
          {q: [_median(runs, f"{side}.step.latency_{q}_ms") for side in sides] for q in ("p50", "p99")})
    latency.set(title="latency, send to receive (ms)", ylabel="ms")
    _bars(server, list(sides.values()),
          {"server": [_median(runs, f"{side}.step.srv_cpu_ms_per_1k") for side in sides]})
    server.set(title="server CPU per 1,000 deliveries (ms)", ylabel="ms of CPU")
    nodes = {"one Redis": "single.step.redis_node_ms_per_1k_posts.redis",
             **{f"master {i}": f"cluster.step.redis_node_ms_per_1k_posts.master {i}" for i in (1, 2, 3)},
             "replicas\n(their sum)": "replicas_ms_per_1k_posts"}
    _bars(redis, list(nodes), {"Redis": [_median(runs, key) for key in nodes.values()]})
    redis.set(title="Redis CPU per 1,000 posts (ms)", ylabel="ms of CPU")
    _save(fig, path)


def sockets(runs, path, args):
    """Clients asked, joined and not (refused, failed or dropped), deliveries
    expected, made and not; server RSS per idle client beside the bound, per run."""
    r = runs[0]
    fig, (counts, memory) = _figure(2, f"Sockets: {r['clients']:,} WebSocket clients in rooms of "
                                       f"100 on {r['workers']} workers (target {r['target']:,})"
                                       f"{_of(runs)}")
    _bars(counts, ["clients", "deliveries"], {
        "asked / expected": [_median(runs, "clients"), _median(runs, "deliveries_expected")],
        "joined / made": [_median(runs, "joined"), _median(runs, "deliveries_made")],
        "not joined / not made": [_median_gap(runs, "clients", "joined"),
                                  _median_gap(runs, "deliveries_expected", "deliveries_made")]})
    counts.set(yscale="symlog", title="clients and deliveries", ylabel="count")
    _per_run(memory, runs, {"RSS": "srv_rss_kb_per_client"})
    memory.axhline(RSS_BOUND_KB, color="gray", linestyle="--", linewidth=1,
                   label=f"bound ({RSS_BOUND_KB:.0f} KB)")
    memory.set(title="server RSS per idle client", ylabel="KB per client")
    memory.legend(fontsize=8)
    _save(fig, path)


def tail(runs, path, args):
    """This chat against gorilla's Go example, per run: find-max deliveries/s, steady p99,
    and steady CPU per 1,000 deliveries beside the floor's per 1,000 writes."""
    fig, (findmax, latency, cpu) = _figure(3, f"Tail: {runs[0]['clients']:,} clients in one room, "
                                              f"{runs[0]['senders']} senders, against gorilla's chat")
    sides = {"chat": "this chat", "gorilla": "gorilla (Go)"}
    _per_run(findmax, runs, {label: f"{name}.findmax.deliveries_per_s" for name, label in sides.items()})
    findmax.set(title="find-max: deliveries/s (p99 <= 200 ms)", ylabel="deliveries/s")
    _per_run(latency, runs, {label: f"{name}.steady.latency_p99_ms" for name, label in sides.items()})
    latency.set(title=f"steady {runs[0]['steady_rate']:.0f} msg/s: p99 (ms)", ylabel="ms")
    _per_run(cpu, runs, {**{label: f"{name}.steady.srv_cpu_ms_per_1k" for name, label in sides.items()},
                         "floor": "floor.cpu_ms_per_1k"})
    cpu.set(title="steady: server CPU per 1,000 deliveries (ms)", ylabel="ms of CPU")
    _save(fig, path)


PLOTS = {"fanout": fanout, "steady": steady, "idle": idle, "longpoll": longpoll, "floor": floor,
         "postcost": postcost, "archive": archive, "storm": storm, "rooms": rooms, "cluster": cluster,
         "sockets": sockets, "tail": tail}


# --- drawing -------------------------------------------------------------------------


def _figure(panels, title):
    """A figure of `panels` plots side by side under `title`: (figure, [axes])."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, panels, figsize=(3.5 + 3.5 * panels, 4.2), dpi=100, squeeze=False)
    fig.suptitle(title, fontsize=11)
    return fig, list(axes[0])


def _save(fig, path):
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _bars(ax, groups, series):
    """Grouped bars: a group per x label, a bar per series ({label: [value per group]})
    with its value above it; a missing value (None) has no bar."""
    width = 0.8 / len(series)
    for i, (label, values) in enumerate(series.items()):
        kept = [(g + (i - (len(series) - 1) / 2) * width, v)
                for g, v in enumerate(values) if v is not None]
        bars = ax.bar([x for x, _ in kept], [v for _, v in kept], width, label=label)
        ax.bar_label(bars, [f"{v:.3g}" for _, v in kept], fontsize=7)
    ax.set_xticks(range(len(groups)), groups)
    half, middle = max(len(groups), 3) / 2, (len(groups) - 1) / 2   # as wide as 3 groups, at least
    ax.set_xlim(middle - half, middle + half)
    if len(series) > 1:
        ax.legend(fontsize=8)


def _per_run(ax, runs, paths):
    """_bars with a group per run, and one for their median when there are several;
    a series per figure ({label: path into a run})."""
    groups = [f"run {i}" for i in range(1, len(runs) + 1)]
    series = {label: [get(run, path) for run in runs] for label, path in paths.items()}
    if len(runs) > 1:
        groups.append("median")
        for label, path in paths.items():
            series[label].append(_median(runs, path))
    _bars(ax, groups, series)


def _median(runs, path):
    """The median over the runs of the figure at `path` (report.get), None if no run has it."""
    values = [v for v in (get(run, path) for run in runs)
              if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return statistics.median(values) if values else None


def _median_gap(runs, wanted, got):
    """The median over the runs of run[wanted] - run[got]."""
    return statistics.median(run[wanted] - run[got] for run in runs)


def _median_counts(runs, key):
    """{name: median over the runs} of the counts at run[key], a name missing in a run as 0."""
    names = sorted({name for run in runs for name in run[key]})
    return {name: statistics.median(run[key].get(name, 0) for run in runs) for name in names}


def _of(runs):
    """What a title says of the runs: nothing for one, the medians' count for several."""
    return f" (medians of {len(runs)} runs)" if len(runs) > 1 else ""
