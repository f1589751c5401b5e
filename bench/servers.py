"""The processes under test: a redis-server and gunicorn, started and always stopped.

Each scenario starts its own pair on free ports (never 6379), so figures of
one scenario do not carry state from another. `ProcTree` reads a process
tree's CPU time and RSS from /proc, the way the figures are defined:
utime+stime and RSS of the gunicorn master and every worker.
"""

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import redis

PROJECT = Path(__file__).resolve().parent.parent
GUNICORN = PROJECT / ".venv" / "bin" / "gunicorn"
CLK_TCK = os.sysconf("SC_CLK_TCK")             # /proc/<pid>/stat time unit, ticks per second
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024    # /proc/<pid>/stat RSS unit, in KB
START_TIMEOUT = 30.0                            # seconds a server may take to open its port
STOP_GRACE = 10.0                               # seconds after SIGTERM before SIGKILL
RATE_UNLIMITED = "1000000"                      # CHAT_RATE_* value: the rate limit is not measured
IDLE_WINDOW_S = 3.0                             # a quiet machine is quiet for this long
IDLE_BUSY_CORES = 0.3                           # quiet: fewer busy cores than this


def free_port():
    """A TCP port free on 127.0.0.1 now, never 6379."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port != 6379:
            return port


def wait_port(port, process, timeout=START_TIMEOUT):
    """Returns once 127.0.0.1:port accepts; raises if process exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited with {process.returncode} "
                               f"before opening port {port}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} did not open within {timeout}s")


def _stop(process):
    """SIGTERM to the process group, SIGKILL after STOP_GRACE; always reaps it."""
    if process is None or process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=STOP_GRACE)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()


class Redis:
    """A redis-server on a free port that keeps nothing on disk."""

    def __init__(self, workdir):
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            wait_port(self.port, self.process)
        except BaseException:
            _stop(self.process)
            raise
        self.client = redis.Redis.from_url(self.url)
        self.tree = ProcTree(self.process.pid)

    def commandstats(self):
        """{command: calls} from INFO commandstats."""
        stats = self.client.info("commandstats")
        return {name[len("cmdstat_"):]: int(v["calls"]) for name, v in stats.items()}

    def stop(self):
        self.client.close()
        _stop(self.process)


class Gunicorn:
    """`gunicorn -c gunicorn.conf.py wsgi:app` from the project, in its own session."""

    def __init__(self, redis_url, workers, log_path, extra_env=None):
        self.port = free_port()
        env = dict(os.environ, REDIS_URL=redis_url, PORT=str(self.port), HOST="127.0.0.1",
                   WEB_CONCURRENCY=str(workers), SECRET_KEY="bench",
                   CHAT_RATE_PER_SEC=RATE_UNLIMITED, CHAT_RATE_BURST=RATE_UNLIMITED)
        env.update(extra_env or {})
        self.log = open(log_path, "ab")
        self.process = subprocess.Popen(
            [str(GUNICORN), "-c", "gunicorn.conf.py", "wsgi:app"], cwd=PROJECT, env=env,
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self.tree = ProcTree(self.process.pid)
        try:
            wait_port(self.port, self.process)
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

    def stop(self):
        _stop(self.process)
        self.log.close()


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
