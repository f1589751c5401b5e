"""Scenario `sockets`: as many idle WebSocket clients as the machine's limits allow, towards 100,000.

The target is cfg.sockets_clients (100,000) clients on cfg.workers gunicorn
workers (2: 50,000 each) and one Redis, in rooms of ROOM_SIZE. Every socket
is a file on both ends, so a worker holds at most its open-file hard limit
of them, less its own files (log, listening socket, epoll, metrics files,
Redis connections: SERVER_FD_MARGIN), and at most gunicorn's
worker_connections. The scenario reads those limits, the system's
(fs.file-max, the local port range) and the worker_connections gunicorn
resolves from gunicorn.conf.py with the run's environment (`--print-config`),
runs at the largest client count they allow (`plan`), and says in one line
what blocks the target, if anything (`blocked`).

The server runs with CHAT_PING_INTERVAL=PING_INTERVAL, CHAT_OPEN_FILES (the
soft limit it raises itself to: the hard limit) and CHAT_WORKER_CONNECTIONS
(a worker's share of the clients, within its open files: a worker whose pool
is full stops accepting and leaves the rest to the others before it runs out
of files).

The clients are spread over client processes (at least cfg.sockets_procs,
more when one process's open-file limit needs it), each with at most
IN_FLIGHT connections between connect() and the client's own join, so the
server is never asked for more handshakes than it takes (the listen queue
does not overflow), and over the source
addresses SOURCE_ADDRESSES (client i connects from `client_address(i)`), so
that each address has the local port range to itself. Each client answers
every ping with a pong (`scan_frames` walks the frame headers of each read)
and sends nothing else unasked: a client that did not answer would be closed
by the server at its next ping (1001).

Steps: connect every client, at most cfg.connect_rate a second (each must
see its own join); measure the server's RSS once the joins are delivered; hold them
HOLD_INTERVALS ping intervals from the last join (every client pinged and
answering; none dropped); then one message from one member of each of the
first MESSAGE_ROOMS rooms (`run_step`), which every member of those rooms
must receive, once. The joins and history the clients received before are
dropped unparsed (`forget`): each client's own join was found as it came.
"""

import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from array import array
from collections import Counter

from chat_app.config import FILES_RESERVED
from tests.servers import GUNICORN, PROJECT

from .analysis import parse
from .client import PONG, WsConn, WsLoop
from .loop import DEAD, OPEN, bind_source

ROOM_SIZE = 100                  # clients per room
MESSAGE_ROOMS = 100              # rooms that get one message each, at the end
PING_INTERVAL = 5.0              # CHAT_PING_INTERVAL, s: several rounds while the clients are held
HOLD_INTERVALS = 2               # the clients are held this many ping intervals after the last join
SERVER_FD_MARGIN = FILES_RESERVED  # a worker's own files, which it keeps beyond its connections
CLIENT_FD_MARGIN = 64            # a client process's own files (pipe, epoll, Python's)
SOURCE_ADDRESSES = tuple(f"127.0.0.{k}" for k in range(1, 5))  # each with the local port range to itself
RSS_BOUND_KB = 20.0              # server memory per idle client, at most
IN_FLIGHT = 100                  # connections a client process has started and not yet seen
                                 # joined (or failed), at most: the server takes them at its pace
SLOWEST_JOINS = 100              # joins a second the connect phase waits for, at the least
MAX_HEADER = 10                  # bytes of the longest frame header the server sends (64-bit length)


def client_address(index):
    """The loopback address client `index` connects from: 127.0.0.1 to 127.0.0.4 in turn."""
    return SOURCE_ADDRESSES[index % len(SOURCE_ADDRESSES)]


def scan_frames(data, skip, partial):
    """Walks the server's frames through one read, carrying a frame cut by the read's end.

    skip: bytes of the current frame's payload still to come; partial: the
    start of a header the last read ended in. Returns (pings, their bytes,
    skip, partial) for the next read.
    """
    pings = ping_bytes = 0
    pos, size = 0, len(data)
    while True:
        if skip:
            taken = min(skip, size - pos)
            skip -= taken
            pos += taken
        if pos >= size:
            return pings, ping_bytes, skip, partial
        header = partial + bytes(data[pos:pos + MAX_HEADER - len(partial)])
        if len(header) < 2:
            return pings, ping_bytes, 0, header
        length = header[1] & 0x7F
        head = 4 if length == 126 else MAX_HEADER if length == 127 else 2
        if len(header) < head:  # fewer than MAX_HEADER bytes: the read ended here
            return pings, ping_bytes, 0, header
        if head > 2:
            length = int.from_bytes(header[2:head], "big")
        if header[0] & 0x0F == 0x9:
            pings += 1
            ping_bytes += head + length
        pos += head - len(partial)
        partial = b""
        skip = length


def plan(target, workers, hard, worker_connections, ports, files_free,
         addresses=len(SOURCE_ADDRESSES)):
    """The largest client count the limits allow, up to target, and what each limit allows.

    hard: the open-file hard limit of a process (a worker holds hard -
    SERVER_FD_MARGIN sockets); worker_connections: gunicorn's; ports: the
    local port range's size (each source address has it); files_free: the
    system's files not yet in use (two a socket: the client's and the server's).
    `binding` names the limit that stops the target (None: the target fits).
    """
    per_worker_files = hard - SERVER_FD_MARGIN
    allows = {  # in the order a tie is blamed
        "open files": workers * per_worker_files,
        "worker_connections": workers * worker_connections,
        "local ports": addresses * ports,
        "file-max": files_free // 2,
    }
    clients = max(0, min(target, *allows.values()))
    binding = min(allows, key=allows.get) if clients < target else None
    return {"target": target, "clients": clients, "binding": binding, "allows": allows,
            "workers": workers, "hard": hard, "per_worker_files": per_worker_files,
            "per_worker": min(per_worker_files, worker_connections),
            "worker_connections": worker_connections, "ports": ports, "addresses": addresses,
            "files_free": files_free}


def blocked(p):
    """The verdict line for the target: what blocks it and what that limit allows."""
    head = f"{p['target']:,} sockets"
    binding, allows = p["binding"], p["allows"]
    if binding is None:
        return f"{head}: within the limits"
    reason = {
        "open files": f"open-file hard limit {p['hard']:,} per process allows "
                      f"{p['workers']} × {p['per_worker_files']:,} (a worker's own files aside)",
        "worker_connections": f"gunicorn worker_connections {p['worker_connections']:,} allows "
                              f"{p['workers']} × {p['worker_connections']:,}",
        "local ports": f"local port range of {p['ports']:,} ports allows "
                       f"{p['addresses']} source addresses × {p['ports']:,}",
        "file-max": f"fs.file-max leaves {p['files_free']:,} files, 2 a socket",
    }[binding]
    return f"{head}: blocked: {reason} = {allows[binding]:,}"


def client_procs(clients, minimum, hard):
    """Client processes: at least `minimum`, and enough that each holds its share of sockets."""
    return max(minimum, math.ceil(clients / (hard - CLIENT_FD_MARGIN)))


def room_members(clients, rooms, room):
    """How many of `clients` are in room number `room` (client i is in room i % rooms)."""
    return clients // rooms + (1 if room < clients % rooms else 0)


def expected_deliveries(clients, rooms, senders):
    """Deliveries of one message in each of the first `senders` rooms: their members."""
    return sum(room_members(clients, rooms, room) for room in range(senders))


def open_files_limit(limits_text):
    """(soft, hard) "Max open files" of a /proc/<pid>/limits text."""
    for line in limits_text.splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    return None


def port_range(text):
    """The size of /proc/sys/net/ipv4/ip_local_port_range's "low high"."""
    low, high = (int(v) for v in text.split())
    return high - low + 1


# --- the client process --------------------------------------------------------------


class SocketConn(WsConn):
    __slots__ = ("skip", "partial", "pings", "pings_then")

    def __init__(self, index, request, room, user):
        super().__init__(index, request, room, user)
        self.skip = 0            # payload bytes of the current frame still to come
        self.partial = b""       # a frame header cut by the end of a read
        self.pings = 0           # pings received (each answered)
        self.pings_then = 0      # pings at the last status command


class SocketsLoop(WsLoop):
    """WsLoop clients that bind a source address of their own, answer every ping,
    and send no pong unasked. `received` counts every byte but the pings', so
    the rooms go quiet between pings. Two more commands: status(): ("status",
    figures): open, failed and dropped clients, pings, source addresses, this
    process's files; forget(): ("forgotten",) once what arrived so far is
    dropped unparsed (the joins and the history: parsing them all would hold
    the loop, and its pongs, for seconds)."""

    conn_class = SocketConn
    unsolicited_pongs = False

    def __init__(self, pipe, port):
        super().__init__(pipe, port)
        self.pings = 0
        self.started = 0     # connections started
        self.settled = 0     # of them, those that saw their own join or failed first

    def on_command(self, name, args):
        if name == "status":
            self.reply("status", self.status())
        elif name == "forget":
            self.forget()
            self.reply("forgotten")
        else:
            super().on_command(name, args)

    def before_connect(self, sock, conn):
        bind_source(sock, client_address(conn.index))
        self.started += 1

    def may_connect(self):
        return self.started - self.settled < IN_FLIGHT

    def on_dead(self, conn):
        if not conn.ready_ns:
            self.settled += 1

    def record(self, conn, data, t):
        joined = conn.ready_ns
        super().record(conn, data, t)
        if not joined and conn.ready_ns:
            self.settled += 1
        pings, ping_bytes, conn.skip, conn.partial = scan_frames(data, conn.skip, conn.partial)
        if pings:
            conn.pings += pings
            self.pings += pings
            self.received -= ping_bytes
            self.write(conn, PONG * pings)

    def forget(self):
        """Drops every client's recorded bytes but a frame cut by the last read."""
        for conn in self.conns.values():
            if conn.skip or conn.partial:
                stream = conn.leftover + conn.buf
                conn.leftover = bytes(stream[parse(stream).consumed:])
            else:
                conn.leftover = b""
            conn.buf, conn.ends, conn.times = bytearray(), array("q"), array("q")
        self.marks = 0

    def status(self):
        conns = self.batch  # every client connected, also those that failed (their fd is reused)
        opened = [c for c in conns if c.open_ns]
        refused = [c for c in opened if c.state == DEAD and c.error.startswith("handshake")]
        dropped = Counter(c.error for c in opened
                          if c.state == DEAD and not c.error.startswith("handshake"))
        live = [c for c in conns if c.state == OPEN]
        since = min((c.pings - c.pings_then for c in live), default=None)
        for c in conns:
            c.pings_then = c.pings
        addresses = Counter(c.sock.getsockname()[0] for c in live)
        failed = sum(1 for c in conns if c.state == DEAD and not c.open_ns)
        return {"clients": len(conns), "open": len(live), "failed": failed,
                "unfinished": len(conns) - len(opened) - failed,
                "refused": len(refused), "dropped": dict(dropped), "pings": self.pings,
                "fewest_pings_since": since, "addresses": dict(addresses),
                "files": len(os.listdir("/proc/self/fd")),
                "limit": resource.getrlimit(resource.RLIMIT_NOFILE)}


def status(pool):
    """Every client process's status, summed: the fewest pings a client got since the last call."""
    replies = [r[0] for r in pool.call("status", {}, "status")]
    dropped, addresses = Counter(), Counter()
    for r in replies:
        dropped.update(r["dropped"])
        addresses.update(r["addresses"])
    fewest = [r["fewest_pings_since"] for r in replies if r["fewest_pings_since"] is not None]
    return {"open": sum(r["open"] for r in replies), "failed": sum(r["failed"] for r in replies),
            "unfinished": sum(r["unfinished"] for r in replies),
            "refused": sum(r["refused"] for r in replies), "dropped": dict(dropped),
            "disconnects": sum(dropped.values()), "pings": sum(r["pings"] for r in replies),
            "fewest_pings_since": min(fewest) if fewest else None,
            "addresses": dict(sorted(addresses.items())),
            "files": [r["files"] for r in replies], "limits": [r["limit"] for r in replies]}


# --- limits ---------------------------------------------------------------------------


def system_limits():
    """The system-wide limits: fs.file-max, files in use, fs.nr_open, the local port range."""
    def read(name):
        with open(f"/proc/sys/{name}") as f:
            return f.read().strip()

    in_use, _, file_max = (int(v) for v in read("fs/file-nr").split())
    ports = read("net/ipv4/ip_local_port_range")
    return {"file_max": file_max, "files_in_use": in_use, "nr_open": int(read("fs/nr_open")),
            "ip_local_port_range": " - ".join(ports.split()), "ports": port_range(ports),
            "somaxconn": int(read("net/core/somaxconn"))}


def resolved_worker_connections(env):
    """gunicorn's worker_connections as gunicorn.conf.py resolves it with this environment."""
    with tempfile.TemporaryDirectory(prefix="bench-config-") as metrics:
        out = subprocess.run(
            [str(GUNICORN), "-c", "gunicorn.conf.py", "--print-config", "wsgi:app"], cwd=PROJECT,
            env={**os.environ, **env, "PROMETHEUS_MULTIPROC_DIR": metrics},
            capture_output=True, text=True, timeout=60).stdout
    for line in out.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "worker_connections":
            return int(value)
    raise RuntimeError(f"gunicorn --print-config printed no worker_connections:\n{out[-2000:]}")


def worker_files(servers):
    """{worker pid: (open files, (soft, hard) limit)} from /proc."""
    master = servers.gunicorn.process.pid
    files = {}
    for pid in servers.tree.pids():
        if pid == master:
            continue
        try:
            with open(f"/proc/{pid}/limits") as f:
                limit = open_files_limit(f.read())
            files[pid] = (len(os.listdir(f"/proc/{pid}/fd")), limit)
        except OSError:
            pass
    return files


# --- the orchestrator -------------------------------------------------------------------


def sockets(cfg, logdir):
    """Scenario: cfg.sockets_clients idle clients, or as many as the limits allow; joined,
    answering pings, held a few ping rounds, then one message in each of MESSAGE_ROOMS rooms."""
    from .scenarios import ClientPool, Servers, connect_clients, log_step, run_step, wait_quiet

    system = system_limits()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    workers = cfg.workers
    share = min(math.ceil(cfg.sockets_clients / workers), hard - SERVER_FD_MARGIN)
    env = {"CHAT_PING_INTERVAL": str(PING_INTERVAL), "CHAT_OPEN_FILES": str(hard),
           "CHAT_WORKER_CONNECTIONS": str(share), "WEB_CONCURRENCY": str(workers)}
    p = plan(cfg.sockets_clients, workers, hard, resolved_worker_connections(env), system["ports"],
             system["file_max"] - system["files_in_use"])
    clients = p["clients"]
    rooms = cfg.sockets_rooms or max(1, clients // ROOM_SIZE)
    names = [f"k{r}" for r in range(rooms)]
    senders = min(MESSAGE_ROOMS, rooms)
    procs = client_procs(clients, cfg.sockets_procs, hard)
    line = blocked(p)
    print(f"  {line}; running {clients:,} clients in {rooms:,} rooms, {workers} workers, "
          f"{procs} client processes", file=sys.stderr, flush=True)
    env.pop("WEB_CONCURRENCY")  # Servers sets it
    with Servers(workers, logdir, env) as servers, \
            ClientPool(SocketsLoop, procs, servers.port) as pool:
        before = servers.tree.sample()[1]
        connect = connect_clients(pool, servers.port, clients, senders, cfg.connect_rate,
                                  rooms=names, prefix="s",
                                  ready_timeout_ns=int(clients / SLOWEST_JOINS * 1e9))
        joined_at = time.monotonic()
        status(pool)  # the pings from here on are the hold's
        wait_quiet(pool)
        after = servers.tree.sample()[1]
        files = worker_files(servers)
        time.sleep(max(0.0, joined_at + HOLD_INTERVALS * PING_INTERVAL - time.monotonic()))
        held = status(pool)
        held_s = time.monotonic() - joined_at
        pool.call("forget", {}, "forgotten")
        step = run_step(servers, pool, 1, senders, 1.0, senders, math.inf, rooms=names)
        if step["delivered"]:  # its line has figures per delivery
            log_step(step)
        end = status(pool)
    expected = expected_deliveries(clients, rooms, senders)
    result = {
        "target": cfg.sockets_clients, "blocked": line, "plan": p, "system": system,
        "clients": clients, "rooms": rooms, "workers": workers, "procs": procs,
        "joined": connect["ready"], "connect_s": connect["connect_s"],
        "handshake_p50_ms": connect["handshake_p50_ms"], "handshake_p99_ms": connect["handshake_p99_ms"],
        "handshake_failures": end["failed"] + end["refused"], "connect_errors": connect["errors"],
        "not_connected": end["unfinished"],
        "disconnects": end["disconnects"], "disconnect_reasons": end["dropped"],
        "disconnects_in_hold": held["disconnects"], "close_codes": step["close_codes"],
        "id_violations": step["id_violations"],
        "ping_interval_s": PING_INTERVAL, "held_s": held_s, "pings_answered": end["pings"],
        "fewest_pings_in_hold": held["fewest_pings_since"],
        "messages": senders, "messages_sent": step["sent"],
        "deliveries_expected": expected, "deliveries_made": step["delivered"],
        "lost": step["lost"], "duplicates": step["duplicates"],
        "delivery_p50_ms": step["latency_p50_ms"], "delivery_p99_ms": step["latency_p99_ms"],
        "srv_rss_before_mb": before / 1024, "srv_rss_after_mb": after / 1024,
        "srv_rss_kb_per_client": (after - before) / max(connect["ready"], 1),
        "open_files_limit": (soft, hard), "worker_connections": p["worker_connections"],
        "worker_files": [f for f, _ in files.values()],
        "worker_limits": [limit for _, limit in files.values()],
        "client_files": end["files"], "client_limits": end["limits"],
        "clients_per_address": held["addresses"],
        "step": step,
    }
    log(result)
    return result


def all_joined_and_delivered(r):
    """Every client asked joined, none failed or was dropped, and every delivery was made."""
    return (r["joined"] == r["clients"] and not r["handshake_failures"] and not r["not_connected"]
            and not r["disconnects"]
            and r["messages_sent"] == r["messages"]
            and r["deliveries_made"] == r["deliveries_expected"]
            and not r["lost"] and not r["duplicates"])


def small_enough(r):
    """The server's memory per idle client is within RSS_BOUND_KB."""
    return r["srv_rss_kb_per_client"] <= RSS_BOUND_KB


def log(r):
    """The run's lines on stderr, with the verdicts."""
    yes = {True: "PASS", False: "FAIL"}
    print(f"  sockets: {r['joined']:,} of {r['clients']:,} joined in {r['connect_s']:.1f} s, "
          f"{r['handshake_failures']} handshake failures, {r['not_connected']} not connected in time, "
          f"{r['disconnects']} disconnects, "
          f"deliveries {r['deliveries_made']:,} of {r['deliveries_expected']:,}: "
          f"{yes[all_joined_and_delivered(r)]}; server {r['srv_rss_kb_per_client']:.1f} KB per "
          f"idle client: {yes[small_enough(r)]} (bound {RSS_BOUND_KB:.0f} KB)\n  {r['blocked']}",
          file=sys.stderr, flush=True)


def limits_text(r):
    """The open-file limits in force: this process's, each worker's, each client process's."""
    def pairs(limits):
        counts = Counter(tuple(limit) for limit in limits if limit)
        return ", ".join(f"{soft:,} / {hard:,}" + (f" (× {n})" if n > 1 else "")
                         for (soft, hard), n in counts.items())

    soft, hard = r["open_files_limit"]
    return (f"benchmark {soft:,} / {hard:,}; workers {pairs(r['worker_limits'])}; "
            f"client processes {pairs(r['client_limits'])}")


HEADLINES = [
    ("clients asked / joined", ("clients", "joined"), "{:,.0f}"),
    ("rooms / workers / client processes", ("rooms", "workers", "procs"), "{:,.0f}"),
    ("connect time (s)", "connect_s", "{:.1f}"),
    ("handshake p50 / p99 (ms)", ("handshake_p50_ms", "handshake_p99_ms"), "{:.1f}"),
    ("handshake failures / not connected in time / disconnects",
     ("handshake_failures", "not_connected", "disconnects"), "{:,.0f}"),
    ("held after the last join (s) / ping interval (s)", ("held_s", "ping_interval_s"), "{:.1f}"),
    ("clients per source address (while held)",
     lambda r: ", ".join(f"{a} {n:,}" for a, n in r["clients_per_address"].items()), "{}"),
    ("pings received and answered / fewest a client got while held", ("pings_answered", "fewest_pings_in_hold"),
     "{:,.0f}"),
    ("messages (one a room) / deliveries expected / made",
     ("messages_sent", "deliveries_expected", "deliveries_made"), "{:,.0f}"),
    ("delivery p50 / p99 (ms)", ("delivery_p50_ms", "delivery_p99_ms"), "{:.1f}"),
    ("server RSS before / after (MB)", ("srv_rss_before_mb", "srv_rss_after_mb"), "{:,.0f}"),
    ("server RSS per idle client (KB)", "srv_rss_kb_per_client", "{:.1f}"),
    ("open-file limit, soft / hard", limits_text, "{}"),
    ("open files held by each worker", lambda r: ", ".join(f"{n:,}" for n in r["worker_files"]), "{}"),
    ("gunicorn worker_connections", "worker_connections", "{:,.0f}"),
    ("fs.file-max / files in use", ("system.file_max", "system.files_in_use"), "{:,.0f}"),
    ("local port range / source addresses",
     lambda r: f"{r['system']['ip_local_port_range']} ({r['system']['ports']:,} ports) / "
               f"{r['plan']['addresses']}", "{}"),
    ("the target", "blocked", "{}"),
]
VERDICTS = [
    ("every client joined and every delivery made, none dropped", all_joined_and_delivered),
    (f"<= {RSS_BOUND_KB:.0f} KB of server memory per idle client", small_enough),
]
