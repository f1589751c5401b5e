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

from .report import get
from .scenarios import ANSWER_BOUND_NS


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


PLOTS = {"fanout": fanout, "steady": steady, "idle": idle, "longpoll": longpoll, "floor": floor}


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
