"""The benchmark's plots (bench/plots.py): one PNG per scenario, from its runs' figures.

The results below are small hand-made ones of the shape each scenario
function returns (as results.json holds them), with only the figures the
plots read besides a few others.
"""

import pytest

pytest.importorskip("matplotlib")

from bench import plots  # noqa: E402
from bench.__main__ import parse_args, write_plots  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"


def step(rate, p50, p99, passed=True, **more):
    """A send window's figures (scenarios.run_step), the ones the plots read among them."""
    return {"step": 1, "rate": rate, "sent": rate, "delivered": rate * 100,
            "latency_p50_ms": p50, "latency_p90_ms": p99, "latency_p99_ms": p99,
            "latency_max_ms": p99, "deliveries_per_s": rate * 100, "srv_cpu_ms_per_1k": 23.5,
            "srv_cpu_pct": 23.0, "redis_cpu_pct": 2.0, "gen_cpu_pct": 12.0, "other_cpu_pct": 6.0,
            "reason": None, "pass": passed, **more}


RESULTS = {
    "fanout": {
        "connect": {"clients": 100, "ready": 100, "srv_rss_idle_kb_per_client": 40.4},
        "steps": [step(100, 2.4, 4.0), step(150, 2.9, 5.1),
                  step(225, 3.1, 250.0, False, retried=True, reason="p99 250 ms > 200 ms"),
                  step(225, 3.3, 6.0), step(337.5, None, None, False, reason="nothing sent")],
        "best": step(225, 3.3, 6.0), "stop_reason": "step 5 at 338 msg/s: nothing sent",
        "srv_rss_kb_per_client": 40.4,
    },
    "steady": {"connect": {"clients": 100, "ready": 100}, "step": step(100, 2.1, 3.8),
               "srv_rss_kb_per_client": 30.0},
    "idle": {"clients": 400, "ready": 400, "failed": 0, "handshake_p50_ms": 19.7,
             "handshake_p99_ms": 66.7, "srv_rss_before_mb": 100.6, "srv_rss_after_mb": 114.2,
             "srv_rss_kb_per_client": 35.0, "not_ready": 0},
    "longpoll": {"waiters": 400, "answered": 400, "statuses": {"200": 400}, "wrong_body": 0,
                 "unanswered": 0, "post_ms": 3.2, "all_answered_ms": 14.8, "answer_p50_ms": 7.2,
                 "answer_p99_ms": 13.9, "late": 0, "srv_rss_kb_per_waiter": 25.7},
    "floor": {"clients": 100, "rate": 100, "writes": 20000, "cpu_ms_per_1k": 7.2},
}


@pytest.fixture
def args():
    return parse_args(["--quick"])


def assert_png(path):
    data = path.read_bytes()
    assert data.startswith(PNG) and len(data) > 1000


def test_every_plot_has_a_sample_result_here():
    assert set(plots.PLOTS) == set(RESULTS)


@pytest.mark.parametrize("name", sorted(RESULTS))
@pytest.mark.parametrize("repeat", [1, 3])
def test_each_scenario_is_drawn_as_a_png_named_after_it(name, repeat, tmp_path, args):
    path = plots.write(name, [RESULTS[name]] * repeat, tmp_path, args)
    assert path == tmp_path / f"{name}.png"
    assert_png(path)


def test_a_scenario_without_a_plot_or_with_only_skipped_runs_has_none(tmp_path, args):
    assert plots.write("nothing-to-draw", [{"figure": 1.0}], tmp_path, args) is None
    assert plots.write("fanout", [{"skipped": "wsbench not found"}], tmp_path, args) is None
    assert list(tmp_path.iterdir()) == []


def test_a_plot_that_fails_is_reported_and_the_others_are_still_drawn(tmp_path, args, capsys,
                                                                      monkeypatch):
    def broken(runs, path, args):
        raise KeyError("latency_p99_ms")

    monkeypatch.setitem(plots.PLOTS, "broken", broken)
    results = {"broken": {"runs": [{}]}, "fanout": {"runs": [RESULTS["fanout"]]}}
    write_plots(["broken", "fanout"], results, tmp_path, args)
    err = capsys.readouterr().err
    assert "plot of broken failed: KeyError('latency_p99_ms')" in err
    assert f"plot of fanout: {tmp_path / 'fanout.png'}" in err
    assert_png(tmp_path / "fanout.png")
