"""Every setting and tuning constant of the server, in one place.

Settings come from the environment (see the README's table); the constants
below them are fixed bounds, each saying what it limits.
"""

import os
from dataclasses import dataclass, field
from pathlib import Path

from .keys import load_public_key

# --- tuning constants ------------------------------------------------------

REDIS_POOL_SIZE = 64          # Redis command connections per process (blocking pool)
REDIS_POOL_WAIT = 5.0         # seconds a request waits for a free pooled connection
JOIN_CONCURRENCY = 32         # WebSockets replaying and joining at once per process; more wait
REDIS_TIMEOUT = 5.0           # seconds a Redis command or connect may take before 503
CLUSTER_REFRESH_INTERVAL = 0.1  # seconds between slot reads after cluster errors (how late a failover is seen)
PUBSUB_BATCH_MAX = 2000       # pub/sub messages fanned out in one batch, at most
PUBSUB_BACKOFF_MIN = 0.05     # first wait before reconnecting the pub/sub connection
PUBSUB_BACKOFF_MAX = 2.0      # longest wait between pub/sub reconnect attempts
PUBSUB_PING_INTERVAL = 1.0    # seconds between PINGs on the pub/sub connection (a silent one is replaced)
PUBSUB_SILENCE = 3.0          # seconds a PING on the pub/sub connection may go unanswered before it is replaced
HISTORY_FIRST_WINDOW = 32     # archived events a history read takes first from the tail (most resumes need fewer)
HISTORY_WINDOW_GROWTH = 2     # each further window from the tail is this many times the one before
ID_CLOCK_SLACK = 86400.0      # seconds an event id may run ahead of this host's clock (else it is bogus)
HEALTH_WAIT = 1.0             # seconds /healthz waits for a hub's first connection to Redis
RECONNECT_WAIT = 1.0          # seconds a listener waits for a reconnect attempt while Redis is away
FIRST_REQUEST_WAIT = 10.0     # seconds a new connection may take to send its first request (then: keepalive)
SUBSCRIBE_TIMEOUT = 5.0       # seconds a listener waits for its room's subscription
PING_SLICES = 50              # ticks a keepalive round is spread over, so a worker's pongs never return all at once
YIELD_EVERY = 200             # listeners pinged, or presence members written, between two yields to the event loop
READ_BYTES = 4096             # bytes read from a WebSocket or event stream per receive call
STALL_GRACE = 2.0             # seconds the oldest of more than CHAT_SEND_QUEUE waiting events may wait before 1013
BACKLOG_MAX_BYTES = 16 << 20  # bytes waiting for one WebSocket or stream, at most (then 1013, whatever their age)
SEND_BUFFER_BYTES = 65536     # kernel send buffer per WebSocket or stream: what a slow reader holds beyond CHAT_SEND_QUEUE
CLOSE_GRACE = 5.0             # seconds a closing WebSocket or stream may take to flush (and answer)
SSE_RETRY_MS = 1000           # how long a browser waits before reopening a dropped event stream
WS_FRAME_SLACK_BYTES = 65536  # bytes a message frame may carry beyond 4 per allowed char
FORM_SLACK_BYTES = 65536      # request body bytes allowed beyond 12 per allowed char
CONTROL_WAIT = 1.0            # seconds a control request (a disconnect) waits for every process's answer
CONTROL_REPLY_TTL = 10        # seconds an unread answer to a control request is kept in Redis
PRESENCE_FLUSH_INTERVAL = 1.0 # seconds between two batched presence updates of a process (at most TTL/4)
PRESENCE_CLUSTER_CALLS = 16   # presence script calls in flight at once on a cluster (no pipelined scripts there)
AUTH_KEY_MIN_BYTES = 32       # shortest CHAT_AUTH_KEY: an HS256 secret as long as the hash (RFC 7518, 3.2)
API_KEY_MIN_CHARS = 16        # shortest CHAT_API_KEY: too long to guess
FILES_RESERVED = 256          # open files a worker keeps beyond its connections (Redis, pub/sub, logs, metrics)
DEFAULT_BACKLOG = 4096        # listen queue when the kernel's net.core.somaxconn cannot be read
GC_THRESHOLDS = (10000, 20, 10)  # a worker's collector: fewer short-lived objects reach the oldest generation

# Headers of every answer: the pages run only their own scripts and styles,
# and may talk only to this server.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def _int(environ, name, default, minimum=0):
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, not {raw!r}") from None
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, not {value}")
    return value


def _float(environ, name, default, minimum=0.0):
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, not {raw!r}") from None
    if not value >= minimum:
        raise ValueError(f"{name} must be at least {minimum}, not {value}")
    return value


@dataclass(frozen=True)
class Settings:
    """The server's settings; `from_env` reads them, tests build them directly."""

    redis_url: str | None = None         # the shared Redis; None: in-process store
    redis_prefix: str = "chat:"          # prefix of every Redis key and channel
    archive_size: int = 100              # events kept per room
    max_message_chars: int = 2000        # longest message, in code points
    longpoll_timeout: float = 25.0       # seconds a long poll waits for events
    rate_burst: int = 20                 # messages a user may post at once per room
    rate_per_sec: float = 5.0            # refill of that allowance, per second
    send_queue: int = 256                # events waiting for a WebSocket before 1013
    ping_interval: float = 25.0          # seconds between keepalive pings
    allowed_origins: tuple[str, ...] = ()  # extra origins allowed to open a WebSocket
    presence_ttl: float = 60.0           # seconds a user stays present after a page load or a poll ends
    fanout_interval: float = 0.005       # seconds between two fan-outs of a process, at least
                                         # (so at most 1/this writes a second to a client)
    secret_key: str | None = None        # Flask's secret; None: random per start, with a warning
    log_format: str = "text"             # "text" or "json" log lines
    auth_key: str | None = field(default=None, repr=False)  # token mode: the HS256 secret
    auth_public_key: str | None = None   # token mode: a PEM public key (RS256 or ES256)
    api_key: str | None = field(default=None, repr=False)   # the server API's bearer key; None: no API
    worker_connections: int = 50000      # connections a worker holds at once (also capped by open_files)
    open_files: int | None = None        # open-file limit a process raises itself to; None: the hard limit
    backlog: int | None = None           # connections waiting to be accepted; None: net.core.somaxconn

    @classmethod
    def from_env(cls, environ=None):
        """Reads every setting; a malformed value stops the start with its name."""
        env = os.environ if environ is None else environ
        origins = tuple(
            o.strip().rstrip("/").lower()
            for o in env.get("CHAT_ALLOWED_ORIGINS", "").split(",")
            if o.strip()
        )
        prefix = env.get("CHAT_REDIS_PREFIX") or "chat:"
        if "{" in prefix or "}" in prefix:  # a brace would make the prefix a cluster hash tag
            raise ValueError(f"CHAT_REDIS_PREFIX must not contain {{ or }}, not {prefix!r}")
        log_format = (env.get("CHAT_LOG_FORMAT") or "text").lower()
        if log_format not in ("text", "json"):
            raise ValueError(f"CHAT_LOG_FORMAT must be text or json, not {log_format!r}")
        kwargs = dict(
            redis_url=env.get("REDIS_URL") or None,
            redis_prefix=prefix,
            archive_size=_int(env, "CHAT_ARCHIVE_SIZE", 100, minimum=1),
            max_message_chars=_int(env, "CHAT_MAX_MESSAGE_CHARS", 2000, minimum=1),
            longpoll_timeout=_float(env, "CHAT_LONGPOLL_TIMEOUT", 25.0),
            rate_burst=_int(env, "CHAT_RATE_BURST", 20, minimum=1),
            rate_per_sec=_float(env, "CHAT_RATE_PER_SEC", 5.0, minimum=0.001),
            send_queue=_int(env, "CHAT_SEND_QUEUE", 256, minimum=1),
            ping_interval=_float(env, "CHAT_PING_INTERVAL", 25.0, minimum=0.1),
            allowed_origins=origins,
            presence_ttl=_float(env, "CHAT_PRESENCE_TTL", 60.0, minimum=1.0),
            fanout_interval=_float(env, "CHAT_FANOUT_INTERVAL", 0.005),
            log_format=log_format,
            worker_connections=_int(env, "CHAT_WORKER_CONNECTIONS", 50000, minimum=1),
            open_files=_int(env, "CHAT_OPEN_FILES", None, minimum=FILES_RESERVED + 1),
            backlog=_int(env, "CHAT_BACKLOG", None, minimum=1),
        )
        return cls(secret_key=env.get("SECRET_KEY") or None, **kwargs, **_keys(env))


def _keys(env):
    """The token mode's key (one of two) and the server API's key, checked."""
    auth_key = env.get("CHAT_AUTH_KEY") or None
    public_key = _public_key(env.get("CHAT_AUTH_PUBLIC_KEY") or None)
    api_key = env.get("CHAT_API_KEY") or None
    if auth_key and public_key:
        raise ValueError("set CHAT_AUTH_KEY (HS256) or CHAT_AUTH_PUBLIC_KEY (RS256, ES256), not both")
    if auth_key and len(auth_key.encode()) < AUTH_KEY_MIN_BYTES:
        raise ValueError(f"CHAT_AUTH_KEY must be at least {AUTH_KEY_MIN_BYTES} bytes long")
    if api_key and len(api_key) < API_KEY_MIN_CHARS:
        raise ValueError(f"CHAT_API_KEY must be at least {API_KEY_MIN_CHARS} characters long")
    return {"auth_key": auth_key, "auth_public_key": public_key, "api_key": api_key}


def _public_key(raw):
    """CHAT_AUTH_PUBLIC_KEY: the PEM text itself, or the path of a file holding it."""
    if raw is None:
        return None
    pem = raw
    if not raw.lstrip().startswith("-----BEGIN"):
        try:
            pem = Path(raw).read_text()
        except (OSError, UnicodeError) as exc:
            raise ValueError(f"CHAT_AUTH_PUBLIC_KEY is neither PEM text nor a readable file: "
                             f"{exc}") from None
    try:
        load_public_key(pem)
    except ValueError as exc:
        raise ValueError(f"CHAT_AUTH_PUBLIC_KEY: {exc}") from None
    return pem
