"""The processes under test, as the benchmark runs them, and /proc readings of them.

`Redis` and `Gunicorn` are tests/servers.py's RedisServer and Server (free
port, never 6379; own session; SIGTERM, then SIGKILL of the process group)
plus what the benchmark needs: a Redis client for INFO, every gunicorn worker
up before a scenario starts, the rate limit out of the way, and a `ProcTree`
of each, which reads a process tree's CPU time and RSS from /proc, the way
the figures are defined: utime+stime and RSS of the gunicorn master and every
worker. `Cluster` is tests/servers.py's RedisCluster (3 masters, 3 replicas)
with the CPU of each node. Each scenario starts its own servers, so figures
of one scenario do not carry state from another.
"""

import os
import signal
import socket
import time

import redis

from tests.servers import START_TIMEOUT, STOP_GRACE, RedisCluster, RedisServer, Server

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

    @property
    def redis_url(self):
        return self.url

    def cpu(self):
        """{node: CPU seconds so far}: the one node, "redis"."""
        return {"redis": self.tree.sample()[0]}

    def commandstats(self):
        """{command: calls} from INFO commandstats."""
        stats = self.client.info("commandstats")
        return {name[len("cmdstat_"):]: int(v["calls"]) for name, v in stats.items()}

    def stop(self):
        self.client.close()
        super().stop()


class Cluster(RedisCluster):
    """A started Redis Cluster of 3 masters and 3 replicas, with each node's CPU.

    Nodes are named by role and the order of the masters' ports: "master 1"
    to "master 3", and "replica 1" (of master 1) to "replica 3".
    """

    def __init__(self, workdir):
        super().__init__(workdir)
        self.trees = {}
        try:
            self.start()
            nodes = self.nodes()
            masters = sorted(port for port, node in nodes.items() if node[1] == "master")
            number = {nodes[port][0]: i + 1 for i, port in enumerate(masters)}
            self.names = {port: f"master {number[nodes[port][0]]}" for port in masters}
            self.names.update({port: f"replica {number[node[2]]}" for port, node in nodes.items()
                               if node[1] == "replica"})
            self.trees = {port: ProcTree(int((self.workdir / f"redis-{port}.pid").read_text()))
                          for port in self.names}
        except BaseException:
            self.stop()
            raise
        self.masters_by_name = {self.names[port]: port for port in masters}

    def stop(self):
        """Stops every node (scripts/redis-cluster.sh) and waits until each has exited,
        so that its directory can go; SIGKILLs a node still there after STOP_GRACE."""
        pids = [tree.root for tree in self.trees.values()]
        super().stop()
        deadline = time.monotonic() + STOP_GRACE
        for pid in pids:
            while (stat := _stat(pid)) is not None and stat[0] != b"Z":
                if time.monotonic() > deadline:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    break
                time.sleep(0.05)

    @property
    def redis_url(self):
        """REDIS_URL for the chat: master 1 (the chat finds the others from it)."""
        return self.url(self.masters_by_name["master 1"])

    def cpu(self):
        """{node name: CPU seconds so far} for every node, masters first."""
        return dict(sorted((self.names[port], _cpu_of([tree.root]))
                           for port, tree in self.trees.items()))

    def rooms(self, count, prefix="c"):
        """`count` room names (a multiple of 3), as many on each master, in turn
        (master 1's, master 2's, master 3's, master 1's...), so that client i of
        connect_clients is in a room of master i % 3 + 1. A room lives on the
        master of its keys' slot, `chat:{<room>}:last`."""
        if count % 3:
            raise ValueError(f"the rooms must be a multiple of the 3 masters, not {count}")
        owned = {name: [] for name in sorted(self.masters_by_name)}
        master_of = {port: name for name, port in self.masters_by_name.items()}
        candidates = (f"{prefix}{i}" for i in range(10**6))
        while min(len(rooms) for rooms in owned.values()) < count // 3:
            room = next(candidates)
            owned[master_of[self.owner(f"chat:{{{room}}}:last")]].append(room)
        return [owned[name][i] for i in range(count // 3) for name in owned]


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
