"""Prometheus metrics (GET /metrics), summed over every worker of the server.

gunicorn.conf.py points PROMETHEUS_MULTIPROC_DIR at a directory before the
workers start: each worker then keeps its values in files there, and /metrics
adds them up (gauges over live workers only). Without it (tests, a single
process) the values live in this process. Hot paths count once per batch.
"""

import os

from flask import Blueprint, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

bp = Blueprint("metrics", __name__)

OPEN_CONNECTIONS = Gauge("chat_open_connections", "Open connections, by transport",
                         ["transport"], multiprocess_mode="livesum")
EVENTS_POSTED = Counter("chat_events_posted", "Events posted, by type", ["type"])
FRAMES_DELIVERED = Counter("chat_frames_delivered",
                           "Events delivered to clients, by transport", ["transport"])
SLOW_CLIENTS_CLOSED = Counter("chat_slow_clients_closed",
                              "WebSockets (closed with 1013) and event streams ended for reading too slowly")
POSTS_REFUSED = Counter("chat_posts_refused", "Posts refused, by reason", ["reason"])
REDIS_ERRORS = Counter("chat_redis_errors", "Redis commands or connections that failed")
HUB_ERRORS = Counter("chat_hub_errors",
                     "Unexpected errors in the hub (a bad message, a failing listener, a bug)")
POST_SECONDS = Histogram("chat_post_seconds", "Time to post an event (one Redis round trip)",
                         buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                  0.5, 1, 2.5, 5))

# Every series exists from the start, at 0 (Prometheus' advice for known labels).
# Those counted for every post and every fan-out are looked up here once:
# labels() takes a lock and builds a tuple on each call.
POSTED = {kind: EVENTS_POSTED.labels(kind) for kind in ("join", "leave", "message")}
DELIVERED = {transport: FRAMES_DELIVERED.labels(transport)
             for transport in ("websocket", "sse", "longpolling")}
for _transport in DELIVERED:
    OPEN_CONNECTIONS.labels(_transport)
for _reason in ("validation", "rate", "origin", "auth"):
    POSTS_REFUSED.labels(_reason)


def registry():
    """Every worker's values when PROMETHEUS_MULTIPROC_DIR is set, else this process's."""
    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        return REGISTRY
    collected = CollectorRegistry()
    multiprocess.MultiProcessCollector(collected)
    return collected


@bp.get("/metrics")
def metrics():
    return Response(generate_latest(registry()), content_type=CONTENT_TYPE_LATEST)
