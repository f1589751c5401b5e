"""bench/tail.py's pure parts: the ratios of a run and the three verdicts, from hand-made figures."""

import pytest

from bench import report
from bench.tail import FINDMAX_RATIO_BOUND, FLOOR_RATIO_BOUND, ratio, tail_figures

VERDICTS = {
    "find-max": "target: chat's find-max >= 2x gorilla's, in every run",
    "p99": "target: chat's steady p99 <= gorilla's",
    "cpu": "target: chat's steady CPU <= 1.25x the floor",
}


def run(chat_max=300_000, gorilla_max=100_000, chat_p99=20.0, gorilla_p99=25.0,
        chat_cpu=5.0, gorilla_cpu=4.0, floor_cpu=4.5):
    """One run's result as tail() has it before tail_figures, with only the figures it reads."""
    def side(best, p99, cpu):
        return {"findmax": {"deliveries_per_s": best},
                "steady": {"latency_p99_ms": p99, "latency_p50_ms": 1.0, "srv_cpu_ms_per_1k": cpu}}
    return tail_figures({"chat": side(chat_max, chat_p99, chat_cpu),
                         "gorilla": side(gorilla_max, gorilla_p99, gorilla_cpu),
                         "floor": {"cpu_ms_per_1k": floor_cpu}})


def summary(runs):
    """{label: text} of the summary rows, as python -m bench prints them for these runs."""
    return dict(report.summary("tail", {**report.median(runs), "each_run": runs}, len(runs)))


def test_the_ratios_of_a_run():
    r = run(chat_max=250_000, gorilla_max=100_000, chat_p99=30.0, gorilla_p99=20.0,
            chat_cpu=6.0, gorilla_cpu=3.0, floor_cpu=4.0)
    assert r["findmax_ratio"] == pytest.approx(2.5)
    assert r["p99_ratio"] == pytest.approx(1.5)
    assert r["cpu_floor_ratio"] == pytest.approx(1.5)
    assert r["gorilla_cpu_floor_ratio"] == pytest.approx(0.75)


def test_a_ratio_with_a_missing_or_zero_figure_is_none():
    assert ratio(None, 2.0) is None
    assert ratio(1.0, None) is None
    assert ratio(1.0, 0) is None
    assert ratio(0.0, 2.0) == 0.0
    r = run(gorilla_max=0, chat_cpu=None)
    assert r["findmax_ratio"] is None and r["cpu_floor_ratio"] is None


def test_every_target_met():
    rows = summary([run(), run(chat_max=210_000), run(chat_max=400_000, gorilla_max=150_000)])
    assert [rows[VERDICTS[k]] for k in ("find-max", "p99", "cpu")] == ["yes", "yes", "yes"]
    assert rows["chat ÷ gorilla, find-max deliveries/s, each run"] == "3.00 / 2.10 / 2.67"
    assert rows["chat: find-max deliveries/s, each run"] == "300,000 / 210,000 / 400,000"
    assert rows["gorilla: find-max deliveries/s, each run"] == "100,000 / 100,000 / 150,000"
    assert rows["runs (medians shown)"] == "3"


def test_find_max_must_be_twice_gorillas_in_every_run_not_in_the_median():
    runs = [run(chat_max=300_000), run(chat_max=199_000), run(chat_max=300_000)]
    assert report.median(runs)["findmax_ratio"] >= FINDMAX_RATIO_BOUND
    assert summary(runs)[VERDICTS["find-max"]] == "NO"
    assert summary([run(chat_max=200_000)])[VERDICTS["find-max"]] == "yes"  # exactly twice


@pytest.mark.parametrize("chat_p99, verdict", [(25.0, "yes"), (24.9, "yes"), (25.1, "NO")])
def test_steady_p99_at_most_gorillas(chat_p99, verdict):
    rows = summary([run(chat_p99=chat_p99, gorilla_p99=25.0)])
    assert rows[VERDICTS["p99"]] == verdict


@pytest.mark.parametrize("chat_cpu, verdict", [(5.0, "yes"), (4.0, "yes"), (5.1, "NO")])
def test_steady_cpu_at_most_a_quarter_above_the_floor(chat_cpu, verdict):
    rows = summary([run(chat_cpu=chat_cpu, floor_cpu=4.0)])
    assert FLOOR_RATIO_BOUND == 1.25
    assert rows[VERDICTS["cpu"]] == verdict


def test_verdicts_on_the_median_ratios():
    runs = [run(chat_p99=30.0), run(chat_p99=20.0), run(chat_p99=24.0)]   # ratios 1.2, 0.8, 0.96
    rows = summary(runs)
    assert rows["chat ÷ gorilla, steady p99"] == "0.96"
    assert rows[VERDICTS["p99"]] == "yes"


def test_missing_figures_give_no_verdict():
    rows = summary([run(gorilla_max=0, gorilla_p99=None, chat_cpu=None)])
    assert [rows[VERDICTS[k]] for k in ("find-max", "p99", "cpu")] == ["n/a", "n/a", "n/a"]
    assert rows["chat ÷ gorilla, find-max deliveries/s, each run"] == "n/a"


def test_a_skipped_scenario_has_no_verdicts():
    rows = summary([{"skipped": "gorilla's chat not given"}])
    assert [rows[VERDICTS[k]] for k in ("find-max", "p99", "cpu")] == ["n/a", "n/a", "n/a"]
