"""How many sockets a process may hold: the open-file limit, connections per
worker and the listen backlog, decided from the settings and the kernel's limits.

`plan` is pure: the kernel's figures come in as arguments, so the decision is
tested without touching the process. `apply` reads those figures, raises the
open-file limit and returns the plan; gunicorn.conf.py calls it once, in the
master, before any worker is forked (the workers inherit the limit).
"""

import resource
from dataclasses import dataclass

from .config import DEFAULT_BACKLOG, FILES_RESERVED

SOMAXCONN = "/proc/sys/net/core/somaxconn"  # the kernel's cap on any listen backlog


@dataclass(frozen=True)
class Limits:
    open_files: int          # the open-file (soft) limit every process runs with
    worker_connections: int  # gunicorn's worker_connections: never more than the files allow
    backlog: int             # gunicorn's backlog: never more than the kernel grants
    warnings: tuple[str, ...] = ()  # what was asked and could not be had, for the log


def plan(settings, hard, somaxconn):
    """The limits to run with; raises ValueError when CHAT_OPEN_FILES is above the
    hard limit (only a privileged process could raise that, and this one will not try).

    Keeps the invariant that a worker stops accepting (gevent's pool is full)
    before it could run out of file descriptors: a full worker leaves new
    connections in the listen queue, for itself later or for another worker,
    instead of failing them with EMFILE."""
    open_files = hard if settings.open_files is None else settings.open_files
    if open_files > hard:
        raise ValueError(f"CHAT_OPEN_FILES={open_files} is above this process's hard limit of "
                         f"{hard} open files (raise it with ulimit -Hn or LimitNOFILE=)")
    warnings = []
    connections = settings.worker_connections
    if connections > open_files - FILES_RESERVED:
        connections = max(1, open_files - FILES_RESERVED)
        warnings.append(f"worker_connections {settings.worker_connections} is capped at "
                        f"{connections} by the open-file limit of {open_files} "
                        f"(CHAT_OPEN_FILES, ulimit -n)")
    cap = somaxconn or DEFAULT_BACKLOG
    backlog = cap if settings.backlog is None else min(settings.backlog, cap)
    if settings.backlog is not None and settings.backlog > cap:
        warnings.append(f"CHAT_BACKLOG {settings.backlog} is capped at {cap} by the kernel "
                        f"(raise net.core.somaxconn)")
    return Limits(open_files, connections, backlog, tuple(warnings))


def read_somaxconn(path=SOMAXCONN):
    """The kernel's cap on a listen backlog, or None where it cannot be read."""
    try:
        with open(path) as f:
            return int(f.read())
    except (OSError, ValueError):
        return None


def apply(settings):
    """Raises this process's open-file limit as planned; returns the plan."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    limits = plan(settings, hard, read_somaxconn())
    if limits.open_files != soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limits.open_files, hard))
    return limits
