"""The benchmark's plots (bench/plots.py): one PNG per scenario, from its runs' figures.

The results below are small hand-made ones of the shape each scenario
function returns (as results.json holds them), with only the figures the
plots read besides a few others.
"""

import pytest

from bench import plots
from bench.__main__ import parse_args, write_plots

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
    "postcost": {"posts": 120, "ws_posts": 100, "http_posts": 20, "evalsha_per_post": 1.0,
                 "in_script_per_post": {"get": 1.0, "publish": 1.0, "rpush": 1.0, "time": 1.0},
                 "other_per_post": {"exists": 0.05}, "other_calls": {"exists": 6},
                 "connections_opened": 0, "set_up_calls": {}, "link_keepalive_calls": {"ping": 6}},
    "archive": {"requests": 50, "sizes": {
        size: {kind: {"requests": 50, "srv_cpu_ms": cpu, "redis_cpu_ms": cpu / 10,
                      "latency_p50_ms": cpu * 0.7, "latency_max_ms": cpu * 2, "events_mean": events}
               for kind, cpu, events in (("lp", 0.6, 5), ("ws", 2.2, 6))}
        for size in ("100", "1000", "10000")}},
    "storm": {"clients": 200, "rooms": 40, "workers": 2, "joins": 200, "not_resumed": 0,
              "dropped_first_s": 0.015, "dropped_last_s": 0.032, "resumed_first_s": 0.49,
              "resumed_p50_s": 0.60, "resumed_p99_s": 0.67, "all_resumed_s": 0.67,
              "joins_per_s_per_worker": 150.0, "srv_cpu_ms_per_join": 6.35,
              "new_cpu_ms_per_join": 3.65, "old_cpu_ms_per_join": 2.55,
              "master_cpu_ms_per_join": 0.15, "redis_cpu_ms_per_join": 0.27,
              "gaps": 0, "repeats": 0, "missed": 0, "per_new_worker": [111, 89]},
    "rooms": {"order": ["chat", "socketio"], "clients": 200, "rooms": 40, "duration_s": 2.0,
              **{name: {"clients": 200, "ready": 200, "sent": 80, "delivered": 400, "lost": 0,
                        "latency_p50_ms": p50, "latency_p99_ms": p50 * 4, "srv_cpu_ms_per_1k": cpu,
                        "redis_cpu_ms_per_1k_posts": cpu / 3, "other_cpu_pct": 3.0, "retried": 0}
                 for name, p50, cpu in (("chat", 1.5, 20.0), ("socketio", 9.0, 400.0),
                                        ("pool", 1.6, 21.0))},
              "cpu_ratio": 0.05},
    "cluster": {"rate": 100, "rooms": 6, "room_names": ["c0", "c1", "c2", "c3", "c4", "c5"],
                "clients": 100, "senders": 10, "workers": 2, "order": ["single", "cluster"],
                "single": {"step": step(100, 1.6, 4.5, redis_node_ms_per_1k_posts={"redis": 250.0}),
                           "redis_idle_cpu_pct": {"redis": 0.2}},
                "cluster": {"step": step(100, 1.6, 4.2, redis_node_ms_per_1k_posts={
                    "master 1": 100.0, "master 2": 150.0, "master 3": 100.0,
                    "replica 1": 100.0, "replica 2": 50.0, "replica 3": 100.0}),
                    "redis_idle_cpu_pct": {"master 1": 0.4}},
                "masters_ms_per_1k_posts": 350.0, "replicas_ms_per_1k_posts": 250.0,
                "busiest_master_per_single": 0.6},
    "sockets": {"target": 100000, "clients": 400, "workers": 2, "joined": 400,
                "handshake_failures": 0, "deliveries_expected": 400, "deliveries_made": 400,
                "lost": 0, "srv_rss_kb_per_client": 28.4},
    "tail": {"order": ["chat", "gorilla"], "clients": 100, "senders": 10, "workers": 2,
             "steady_rate": 100, "floor": {"cpu_ms_per_1k": 6.3},
             **{name: {"findmax": {"deliveries_per_s": rate},
                       "steady": {"latency_p99_ms": p99, "srv_cpu_ms_per_1k": cpu}}
                for name, rate, p99, cpu in (("chat", 1.1e6, 72.4, 7.8),
                                             ("gorilla", 2.2e5, 30.9, 8.3))},
             "findmax_ratio": 5.0, "p99_ratio": 2.3, "cpu_floor_ratio": 1.24},
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
    assert plots.write("rooms", [{"skipped": "wsbench not found"}], tmp_path, args) is None
    assert list(tmp_path.iterdir()) == []


def test_a_skipped_run_is_left_out_of_the_others_plot(tmp_path, args):
    runs = [{"skipped": "wsbench not found"}, RESULTS["rooms"]]
    assert_png(plots.write("rooms", runs, tmp_path, args))


def test_runs_that_differ_are_drawn_with_their_medians(tmp_path, args):
    """Figures missing from a run (a None, a command only one run saw) are left out."""
    other = {**RESULTS["postcost"], "other_per_post": {}, "evalsha_per_post": 1.01}
    assert_png(plots.write("postcost", [RESULTS["postcost"], other], tmp_path, args))
    nothing = {**RESULTS["steady"], "step": step(100, None, None, srv_cpu_ms_per_1k=None)}
    assert_png(plots.write("steady", [RESULTS["steady"], nothing], tmp_path, args))
    resumed_none = {**RESULTS["storm"], "joins": 0, **dict.fromkeys(
        ("resumed_first_s", "resumed_p50_s", "resumed_p99_s", "all_resumed_s"))}
    assert_png(plots.write("storm", [resumed_none], tmp_path, args))


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
