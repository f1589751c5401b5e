"""gunicorn settings: `gunicorn -c gunicorn.conf.py wsgi:app` (the Procfile's web line).

gevent workers; one worker when there is no REDIS_URL (the embedded store
lives in one process); on SIGTERM each worker closes its WebSockets with 1012,
ends its event streams and answers its long polls, so clients reconnect
elsewhere and resume.
"""

import logging.config
import os
import shutil
import signal
import tempfile

from gunicorn import glogging

from chat_app import limits, logs
from chat_app.config import Settings

bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '8000')}"
worker_class = "chat_app.worker.Worker"  # gevent, one pool of connections (chat_app/worker.py)
graceful_timeout = 10        # seconds a stopping worker waits for its requests
keepalive = 2                # seconds an idle HTTP keep-alive connection stays open (and delays a stop)
timeout = 30                 # seconds a silent worker lives before it is replaced
control_socket_disable = True  # no gunicornc control socket (several servers may share a home)
limit_request_line = 8190    # longest request line (gunicorn's maximum); longer ones get 414

_reason = None
if os.environ.get("REDIS_URL"):
    workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
else:
    workers = 1
    _reason = ("REDIS_URL is not set: one worker, on the embedded in-process store "
               "(set REDIS_URL to share rooms across workers and hosts)")


class Logger(glogging.Logger):
    """gunicorn's lines in the app's format (CHAT_LOG_FORMAT: text or json, read
    with every other setting, so a malformed one stops the start);
    the app logs one line per request itself (chat_app/logs.py), so gunicorn's
    access lines are off (and cost nothing)."""

    def setup(self, cfg):
        super().setup(cfg)
        logging.config.dictConfig(logs.config(Settings.from_env().log_format))

    def access(self, resp, req, environ, request_time):
        pass


logger_class = Logger

# /metrics adds up every worker's values from files in this directory; it is
# emptied at start, a dead worker's gauges are dropped, and it is removed at exit.
_metrics_dir_is_ours = "PROMETHEUS_MULTIPROC_DIR" not in os.environ
if _metrics_dir_is_ours:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="chat-metrics-")

# Every connection is a file descriptor: the open-file limit is raised (to the
# hard limit, or CHAT_OPEN_FILES), a worker holds no more connections than it
# allows, and the listen queue is as deep as the kernel lets it be (a restart's
# reconnect storm waits there instead of being refused).
_limits = limits.apply(Settings.from_env())
worker_connections = _limits.worker_connections  # concurrent connections per worker (WebSockets, long polls)
backlog = _limits.backlog                        # connections waiting to be accepted


def on_starting(server):
    if server.cfg.is_ssl:
        # The fan-out writes each batch's bytes straight to the sockets' file
        # descriptors, past any TLS layer: end TLS at a proxy in front instead.
        raise SystemExit("the chat does not serve TLS itself (--certfile/--keyfile): "
                         "end TLS at a proxy or load balancer in front of it")
    if _reason:
        server.log.warning(_reason)
    for warning in _limits.warnings:
        server.log.warning(warning)
    server.log.info("open files %d, worker_connections %d, backlog %d",
                    _limits.open_files, _limits.worker_connections, _limits.backlog)
    metrics_dir = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    os.makedirs(metrics_dir, exist_ok=True)
    for name in os.listdir(metrics_dir):
        os.remove(os.path.join(metrics_dir, name))


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    if _metrics_dir_is_ours:
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)


def post_worker_init(worker):
    """Starts the hub (so /healthz reflects its subscription from the start),
    chains gunicorn's SIGTERM handler with the hub's graceful shutdown, and
    sets the collector for a worker of long-lived connections (GC_THRESHOLDS)."""
    import gc

    import gevent

    from chat_app.config import GC_THRESHOLDS

    gc.collect()  # no garbage of the start is kept for good by the freeze
    gc.freeze()   # the app's own objects, made at start, are never scanned again
    gc.set_threshold(*GC_THRESHOLDS)
    worker.log.info("collector: %d start-up objects frozen, thresholds %s",
                    gc.get_freeze_count(), gc.get_threshold())

    chat = worker.wsgi.extensions["chat"]
    chat.connections = worker.connections  # a WebSocket's greenlet takes its request's place
    hub = chat.hub
    hub.start()
    previous = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum, frame):
        previous(signum, frame)
        gevent.spawn(hub.shutdown)

    signal.signal(signal.SIGTERM, on_sigterm)
