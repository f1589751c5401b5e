"""Figures for people: medians over repeats, the summary table (plots.py draws the plots).

A scenario's result is a nested dict of figures (scenarios.py). `median`
folds the results of repeated runs into one dict of the same shape, each
number the median of the runs; `summary` picks the headline figures.
"""

import statistics

from . import sockets, storm
from .archive import ARCHIVE_SIZES, FLAT_RATIO, flat
# The two halves of the cluster scenario, as the summary names them.
SIDES = (("single", "one Redis"), ("cluster", "cluster"))


def _both(label, path, fmt):
    """A cluster row: one figure of both halves, "one Redis / cluster"."""
    return (f"{label}: one Redis / cluster", tuple(f"{side}.{path}" for side, _ in SIDES), fmt)


def _step(label, side, keys, fmt):
    """A cluster row: several figures of one half's window."""
    return (label, tuple(f"{side}.step.{key}" for key in keys), fmt)

from .rooms import HEADLINES as ROOMS_HEADLINES
from .tail import HEADLINES as TAIL_HEADLINES

# The headline figures of each scenario: (label, path into the result, format).
HEADLINES = {
    "fanout": [
        ("best rate (msg/s offered)", "best.rate", "{:,.0f}"),
        ("deliveries/s", "best.deliveries_per_s", "{:,.0f}"),
        ("latency p50 / p99 (ms)", ("best.latency_p50_ms", "best.latency_p99_ms"), "{:.1f}"),
        ("lost / dup / out of order", ("best.lost", "best.duplicates", "best.out_of_order"), "{:.0f}"),
        ("id order violations", "best.id_violations", "{:.0f}"),
        ("server CPU per 1k deliveries (ms)", "best.srv_cpu_ms_per_1k", "{:.2f}"),
        ("server CPU (% of a core)", "best.srv_cpu_pct", "{:.0f}"),
        ("server RSS per client, peak (KB)", "srv_rss_kb_per_client", "{:.1f}"),
        ("server RSS per client, idle (KB)", "connect.srv_rss_idle_kb_per_client", "{:.1f}"),
        ("redis CPU (% of a core)", "best.redis_cpu_pct", "{:.0f}"),
        ("generator CPU (% of a core)", "best.gen_cpu_pct", "{:.0f}"),
        ("other processes' CPU (% of a core)", "best.other_cpu_pct", "{:.0f}"),
        ("stopped by", "stop_reason", "{}"),
    ],
    "steady": [
        ("rate (msg/s)", "step.rate", "{:,.0f}"),
        ("deliveries/s", "step.deliveries_per_s", "{:,.0f}"),
        ("latency p50 / p99 (ms)", ("step.latency_p50_ms", "step.latency_p99_ms"), "{:.1f}"),
        ("lost / dup / out of order", ("step.lost", "step.duplicates", "step.out_of_order"), "{:.0f}"),
        ("server CPU per 1k deliveries (ms)", "step.srv_cpu_ms_per_1k", "{:.2f}"),
        ("server CPU (% of a core)", "step.srv_cpu_pct", "{:.0f}"),
        ("redis CPU (% of a core)", "step.redis_cpu_pct", "{:.0f}"),
        ("generator CPU (% of a core)", "step.gen_cpu_pct", "{:.0f}"),
        ("other processes' CPU (% of a core)", "step.other_cpu_pct", "{:.0f}"),
    ],
    "idle": [
        ("clients ready / asked", ("ready", "clients"), "{:,.0f}"),
        ("handshake failures", "failed", "{:.0f}"),
        ("connect time (s)", "connect_s", "{:.1f}"),
        ("handshake p50 / p99 (ms)", ("handshake_p50_ms", "handshake_p99_ms"), "{:.1f}"),
        ("server RSS before / after (MB)", ("srv_rss_before_mb", "srv_rss_after_mb"), "{:.0f}"),
        ("server RSS per client (KB)", "srv_rss_kb_per_client", "{:.1f}"),
    ],
    "longpoll": [
        ("waiters parked", "waiters", "{:,.0f}"),
        ("answered / late (>1 s)", ("answered", "late"), "{:,.0f}"),
        ("all answered after the post (ms)", "all_answered_ms", "{:.0f}"),
        ("answer p50 / p99 (ms)", ("answer_p50_ms", "answer_p99_ms"), "{:.0f}"),
        ("wrong bodies / unanswered", ("wrong_body", "unanswered"), "{:.0f}"),
        ("server RSS per waiter (KB)", "srv_rss_kb_per_waiter", "{:.1f}"),
    ],
    "postcost": [
        ("posts (WebSocket + HTTP)", "posts", "{:,.0f}"),
        ("EVALSHA per post", "evalsha_per_post", "{:.3f}"),
        ("inside the script, per post", "in_script_per_post", "{}"),
        ("other commands, per post", "other_per_post", "{}"),
        ("connections opened meanwhile (HELLO)", "connections_opened", "{:.0f}"),
    ],
    "floor": [
        ("clients / rate (msg/s)", ("clients", "rate"), "{:,.0f}"),
        ("a bare loop's CPU per 1k writes (ms)", "cpu_ms_per_1k", "{:.2f}"),
    ],
    "archive": [
        *[(f"{name}, archive {size:,}: server / Redis CPU per request (ms)",
           (f"sizes.{size}.{kind}.srv_cpu_ms", f"sizes.{size}.{kind}.redis_cpu_ms"), "{:.3f}")
          for kind, name in (("lp", "long poll"), ("ws", "resume")) for size in ARCHIVE_SIZES],
        *[(f"{name}, archive {size:,}: latency p50 (ms)", f"sizes.{size}.{kind}.latency_p50_ms", "{:.2f}")
          for kind, name in (("lp", "long poll"), ("ws", "resume")) for size in ARCHIVE_SIZES],
        ("max/min over the sizes", lambda r: flat(r["sizes"])[0], "{}"),
    ],
    "cluster": [
        ("rate (msg/s) / rooms / clients", ("rate", "rooms", "clients"), "{:,.0f}"),
        _both("deliveries/s", "step.deliveries_per_s", "{:,.0f}"),
        *(_step(f"latency p50 / p99, {name} (ms)", side,
                ("latency_p50_ms", "latency_p99_ms"), "{:.1f}") for side, name in SIDES),
        *(_step(f"lost / dup / out of order, {name}", side,
                ("lost", "duplicates", "out_of_order"), "{:.0f}") for side, name in SIDES),
        _both("server CPU per 1k deliveries (ms)", "step.srv_cpu_ms_per_1k", "{:.2f}"),
        ("one Redis's CPU per 1k posts (ms)", "single.step.redis_node_ms_per_1k_posts.redis",
         "{:.1f}"),
        ("each master's CPU per 1k posts (ms)",
         tuple(f"cluster.step.redis_node_ms_per_1k_posts.master {i}" for i in (1, 2, 3)),
         "{:.1f}"),
        ("masters' / replicas' CPU per 1k posts (ms)",
         ("masters_ms_per_1k_posts", "replicas_ms_per_1k_posts"), "{:.1f}"),
        ("busiest master ÷ one Redis", "busiest_master_per_single", "{:.2f}"),
        ("idle CPU: one Redis / each master (%)",
         ("single.redis_idle_cpu_pct.redis",
          *(f"cluster.redis_idle_cpu_pct.master {i}" for i in (1, 2, 3))), "{:.1f}"),
        _both("server CPU (% of a core)", "step.srv_cpu_pct", "{:.0f}"),
        _both("generator CPU (% of a core)", "step.gen_cpu_pct", "{:.0f}"),
        _both("other processes' CPU (% of a core)", "step.other_cpu_pct", "{:.0f}"),
    ],
    "storm": storm.HEADLINES,
    "rooms": ROOMS_HEADLINES,
    "sockets": sockets.HEADLINES,
    "tail": TAIL_HEADLINES,
}


GOAL_DELIVERIES = 1_000_000   # the goal: deliveries per second at the p99 bound

# What each scenario must show, as (label, test of the result), or a list of them.
VERDICTS = {
    "fanout": ("goal: 1,000,000 deliveries/s within the p99 bound",
               lambda r: (get(r, "best.deliveries_per_s") or 0) >= GOAL_DELIVERIES),
    "steady": ("every message delivered once, in order",
               lambda r: not any(get(r, f"step.{k}") for k in
                                 ("lost", "duplicates", "out_of_order", "id_violations"))),
    "idle": ("every client connected and saw its own join",
             lambda r: r["ready"] == r["clients"] and not r["failed"]),
    "longpoll": ("every waiter answered within 1 s of the post",
                 lambda r: r["answered"] == r["waiters"] and not r["late"] and not r["wrong_body"]),
    "postcost": ("a post is one EVALSHA and nothing else",
                 lambda r: r["evalsha_per_post"] == 1 and not r["other_per_post"]),
    "archive": (f"flat: server CPU, Redis CPU and latency p50 max/min <= {FLAT_RATIO} over the sizes",
                lambda r: flat(r["sizes"])[1]),
    "cluster": ("nothing lost, all in order; each master < one Redis",
                lambda r: all(not get(r, f"{side}.step.{k}") for side in ("single", "cluster")
                              for k in ("lost", "duplicates", "out_of_order", "id_violations",
                                        "disconnects", "error_frames"))
                and (r.get("busiest_master_per_single") or 1) < 1),
    "storm": storm.VERDICT,
    "sockets": sockets.VERDICTS,
}


def get(result, path):
    for key in path.split("."):
        if result is None:
            return None
        result = result.get(key)
    return result


def median(results):
    """One result of the same shape: numbers are medians, other values come from the first run."""
    first = results[0]
    if isinstance(first, dict):
        keys = first.keys()
        return {k: median([r.get(k) for r in results if isinstance(r, dict)]) for k in keys}
    numbers = [r for r in results if isinstance(r, (int, float)) and not isinstance(r, bool)]
    if numbers and len(numbers) == len(results):
        return statistics.median(numbers)
    return first


def render(value, fmt):
    if value is None:
        return "n/a"
    if isinstance(value, dict):
        return ", ".join(f"{k} {v:.3g}" for k, v in value.items()) or "none"
    return fmt.format(value)


def summary(name, result, runs=1):
    """The scenario's headline figures as (label, text) rows."""
    rows = []
    for label, path, fmt in HEADLINES[name]:
        if callable(path):  # a figure computed from the result
            rows.append((label, render(path(result), fmt)))
            continue
        paths = path if isinstance(path, tuple) else (path,)
        rows.append((label, " / ".join(render(get(result, p), fmt) for p in paths)))
    verdicts = VERDICTS.get(name, [])  # floor is a yardstick, with nothing to meet
    for label, test in verdicts if isinstance(verdicts, list) else [verdicts]:
        rows.append((label, "yes" if test(result) else "NO"))
    if runs > 1:
        rows.append(("runs (medians shown)", str(runs)))
    return rows


def table(sections):
    """A plain-text table of (title, rows) sections."""
    width = max((len(label) for _, rows in sections for label, _ in rows), default=10)
    lines = []
    for title, rows in sections:
        lines.append(f"== {title}")
        lines += [f"  {label:<{width}}  {text}" for label, text in rows]
    return "\n".join(lines)


def steps_table(steps):
    """The find-max steps, one line each."""
    lines = ["  step  msg/s  deliveries/s   p50 ms   p99 ms  srv ms/1k  srv %  redis %  gen %  others %"
             "  verdict"]
    for s in steps:
        p50, p99 = s["latency_p50_ms"], s["latency_p99_ms"]
        cpu = s["srv_cpu_ms_per_1k"]
        lines.append(
            f"  {s['step']:>4} {s['rate']:>6.0f} {s['deliveries_per_s']:>13,.0f} "
            f"{p50 if p50 is not None else float('nan'):>8.1f} "
            f"{p99 if p99 is not None else float('nan'):>8.1f} "
            f"{cpu if cpu is not None else float('nan'):>10.2f} {s['srv_cpu_pct']:>6.0f} "
            f"{s['redis_cpu_pct']:>8.0f} {s['gen_cpu_pct']:>6.0f} {s['other_cpu_pct']:>9.0f}  "
            f"{'pass' if s['pass'] else s['reason']}{' (disturbed: run again)' if s.get('retried') else ''}")
    return "\n".join(lines)

