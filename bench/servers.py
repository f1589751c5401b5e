"""The processes under test, as the benchmark runs them, and /proc readings of them.

`Redis` and `Gunicorn` are tests/servers.py's RedisServer and Server (free
port, never 6379; own session; SIGTERM, then SIGKILL of the process group)
plus what the benchmark needs: a Redis client for INFO, every gunicorn worker
up before a scenario starts, the rate limit out of the way, and a `ProcTree`
of each, which reads a process tree's CPU time and RSS from /proc, the way
the figures are defined: utime+stime and RSS of the gunicorn master and every
worker. Each scenario starts its own pair, so figures of one scenario do not
carry state from another.
"""

import os
import socket
import time

import redis

from tests.servers import START_TIMEOUT, RedisServer, Server

CLK_TCK = os.sysconf("SC_CLK_TCK")             # /proc/<pid>/stat time unit, ticks per second
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024    # /proc/<pid>/stat RSS unit, in KB
RATE_UNLIMITED = "1000000"                      # CHAT_RATE_* value: the rate limit is not measured
IDLE_WINDOW_S = 3.0                             # a quiet machine is quiet for this long
IDLE_BUSY_CORES = 0.3                           # quiet: fewer busy cores than this


class Redis(RedisServer):
    """A started redis-server that keeps nothing on disk, with a client and its ProcTree."""

    def __init__(self, workdir):
        super().__init__(workdir)
        self.start()
        self.client = redis.Redis.from_url(self.url)
        self.tree = ProcTree(self.process.pid)

    def commandstats(self):
        """{command: calls} from INFO commandstats."""
        stats = self.client.info("commandstats")
        return {name[len("cmdstat_"):]: int(v["calls"]) for name, v in stats.items()}

    def stop(self):
        self.client.close()
        super().stop()


class Gunicorn(Server):
    """A started gunicorn whose `workers` workers all answer /healthz, with its ProcTree."""

    def __init__(self, redis_url, workers, log_dir, extra_env=None):
        env = {"SECRET_KEY": "bench", "CHAT_RATE_PER_SEC": RATE_UNLIMITED,
               "CHAT_RATE_BURST": RATE_UNLIMITED, **(extra_env or {})}
        super().__init__(redis_url, workers=workers, log_dir=log_dir, **env)
        self.start()
        self.tree = ProcTree(self.process.pid)
        try:
            self._wait_workers(workers)
        except BaseException:
            self.stop()
            raise

    def _wait_workers(self, workers):
        """Waits until `workers` workers answer /healthz (each has imported the app)."""
        deadline = time.monotonic() + START_TIMEOUT
        while len(self.tree.pids()) < 1 + workers:
            if time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn did not start {workers} workers")
            time.sleep(0.05)
        for _ in range(4 * workers):  # the accepting worker is random: ask a few times
            with socket.create_connection(("127.0.0.1", self.port), timeout=10) as s:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n")
                answer = s.recv(4096)
            if b" 200 " not in answer.split(b"\r\n", 1)[0]:
                raise RuntimeError(f"/healthz answered {answer[:80]!r}")
        time.sleep(0.5)


class ProcTree:
    """A process and its descendants, read from /proc."""

    def __init__(self, root):
        self.root = root

    def pids(self):
        """The root and every live descendant."""
        children = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                stat = _stat(entry)
                if stat is not None:
                    children.setdefault(int(stat[1]), []).append(int(entry))
        found, todo = [], [self.root]
        while todo:
            pid = todo.pop()
            found.append(pid)
            todo.extend(children.get(pid, ()))
        return found

    def sample(self):
        """(CPU seconds utime+stime, RSS in KB) summed over the tree now."""
        pids = self.pids()
        rss = 0
        for pid in pids:
            stat = _stat(pid)
            if stat is not None:
                rss += int(stat[21]) * PAGE_KB
        return _cpu_of(pids), rss


def machine_busy():
    """CPU seconds every CPU of the machine spent busy (not idle, not waiting) since boot."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / CLK_TCK  # user..steal; guest time is inside user


def wait_idle_machine(most_s, exclude=()):
    """Waits up to most_s for a quiet machine; returns the busy cores of the last window.

    The CPU of the processes in `exclude` (this benchmark's own, idling between
    steps) does not count.
    """
    deadline = time.monotonic() + most_s
    while True:
        busy0, own0 = machine_busy(), _cpu_of(exclude)
        time.sleep(IDLE_WINDOW_S)
        cores = (machine_busy() - busy0 - (_cpu_of(exclude) - own0)) / IDLE_WINDOW_S
        if cores < IDLE_BUSY_CORES or time.monotonic() > deadline:
            return cores


def _cpu_of(pids):
    """utime+stime seconds of these processes (those still alive)."""
    total = 0
    for pid in pids:
        stat = _stat(pid)
        if stat is not None:
            total += int(stat[11]) + int(stat[12])
    return total / CLK_TCK


def _stat(pid):
    """/proc/<pid>/stat fields after the command name (index 0 is the state), or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            line = f.read()
    except OSError:
        return None
    return line[line.rindex(b")") + 2:].split()
