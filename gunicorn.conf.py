"""gunicorn settings: `gunicorn -c gunicorn.conf.py wsgi:app` (the Procfile's web line).

gevent workers; one worker when there is no REDIS_URL (the embedded store
lives in one process); on SIGTERM each worker closes its WebSockets with 1012
and answers its long polls, so clients reconnect elsewhere and resume.
"""

import os
import resource
import signal

bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '8000')}"
worker_class = "gevent"
worker_connections = 20000   # concurrent connections per worker (WebSockets, long polls)
graceful_timeout = 10        # seconds a stopping worker waits for its requests
keepalive = 2                # seconds an idle HTTP keep-alive connection stays open (and delays a stop)
timeout = 30                 # seconds a silent worker lives before it is replaced

_reason = None
if os.environ.get("REDIS_URL"):
    workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
else:
    workers = 1
    _reason = ("REDIS_URL is not set: one worker, on the embedded in-process store "
               "(set REDIS_URL to share rooms across workers and hosts)")

# Every connection is a file descriptor: allow as many as the hard limit.
_soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (_hard, _hard))


def on_starting(server):
    if _reason:
        server.log.warning(_reason)


def post_worker_init(worker):
    """Chains gunicorn's SIGTERM handler with the hub's graceful shutdown."""
    import gevent

    hub = worker.wsgi.extensions["chat"].hub
    previous = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum, frame):
        previous(signum, frame)
        gevent.spawn(hub.shutdown)

    signal.signal(signal.SIGTERM, on_sigterm)
control_socket_disable = True  # no gunicornc control socket (several servers may share a home)
