"""Log lines: one per request and per WebSocket session, plus warnings.

Plain text by default, JSON lines when CHAT_LOG_FORMAT=json; gunicorn's own
lines go through the same formatter (gunicorn.conf.py). Structured details go
in `extra={"fields": {...}}`. Message text is never logged, and neither are
tokens or keys: request lines log the path alone, and every line is redacted
besides (a `token=` parameter or a bearer credential in a URL or an error).
"""

import json
import logging
import re
import time
from datetime import datetime, timezone

from flask import g, request

access = logging.getLogger("chat_app.access")

_SECRET = re.compile(r"(token=|bearer\s+)[^\s&;\"'\\]+", re.IGNORECASE)
_JWT = re.compile(r"eyJ[\w-]*\.[\w-]+\.[\w-]*")  # a JWT anywhere: its header is '{"...'


def redact(line):
    """line with every `token=<value>`, `Bearer <value>` and JWT replaced."""
    return _JWT.sub("[redacted]", _SECRET.sub(r"\1[redacted]", line))


def _timestamp(record):
    return datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds")


class TextFormatter(logging.Formatter):
    """`<time> <LEVEL> [<pid>] <logger>: <message> key=value ...`"""

    def format(self, record):
        fields = " ".join(f"{k}={v}" for k, v in getattr(record, "fields", {}).items())
        line = (f"{_timestamp(record)} {record.levelname} [{record.process}] "
                f"{record.name}: {record.getMessage()}")
        if fields:
            line += " " + fields
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return redact(line)


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, pid, logger, message and the fields."""

    def format(self, record):
        data = {"time": _timestamp(record), "level": record.levelname, "pid": record.process,
                "logger": record.name, "message": record.getMessage()}
        data.update(getattr(record, "fields", {}))
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return redact(json.dumps(data, ensure_ascii=False, default=str))


def config(log_format):
    """A logging.config.dictConfig for gunicorn (logconfig_dict) and for the app."""
    formatter = JsonFormatter if log_format == "json" else TextFormatter
    stream = {"class": "logging.StreamHandler", "formatter": "chat"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"chat": {"()": formatter}},
        "handlers": {"console": {**stream, "stream": "ext://sys.stdout"},
                     "error_console": {**stream, "stream": "ext://sys.stderr"}},
        "root": {"level": "INFO", "handlers": ["console"]},
        "loggers": {
            "gunicorn.error": {"level": "INFO", "handlers": ["error_console"], "propagate": False},
            # the app logs requests itself (init_app), escaped for JSON
            "gunicorn.access": {"level": "INFO", "handlers": [], "propagate": False},
        },
    }


def init_app(app):
    """Logs one line per HTTP request (WebSocket sessions log their own).

    Records carry no thread: asking for it makes gevent's threading give each
    greenlet that logs a dummy Thread of its own, kept while the greenlet
    lives (half a kilobyte a WebSocket, CPU on every line); lines name the process.
    """
    logging.logThreads = False

    @app.before_request
    def start_timer():
        g.started = time.monotonic()

    @app.after_request
    def log_request(response):
        if request.endpoint != "websocket.socket":
            elapsed = time.monotonic() - g.get("started", time.monotonic())
            access.info("request", extra={"fields": {
                "method": request.method, "path": request.path, "status": response.status_code,
                "ms": round(elapsed * 1000, 1), "remote": request.remote_addr}})
        return response
