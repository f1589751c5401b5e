"""The project's fan-out benchmark: `make bench` or `.venv/bin/python -m bench --help`.

Modules, one job each:
    servers.py    tests/servers.py's redis-server, Redis Cluster and gunicorn, as the
                  benchmark runs them; /proc CPU and RSS, waiting for a quiet machine
    loop.py       a client process's epoll loop: paced connects, HTTP head, command pipe
    client.py     WebSocket clients: record reads during a step, send, analyse after
    longpoll.py   long-poll waiters
    analysis.py   frame parsing, loss/duplicate/order/id checks, latency histogram
    scenarios.py  the scenarios, run by the orchestrator process
    report.py     medians, the summary table
    plots.py      one plot per scenario, bench/results/<time>/<scenario>.png
"""
