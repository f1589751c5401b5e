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


PLOTS = {"fanout": fanout}


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


def _median(runs, path):
    """The median over the runs of the figure at `path` (report.get), None if no run has it."""
    values = [v for v in (get(run, path) for run in runs)
              if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return statistics.median(values) if values else None
