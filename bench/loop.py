"""The part every client process shares: paced non-blocking connects, the
HTTP request and answer head, the command pipe, and one epoll loop.

A client process serves many connections on raw non-blocking sockets. The
orchestrator (scenarios.py) talks to it over a multiprocessing pipe: it sends
(command, args) tuples; the process answers each with one message, maybe
later (a command may start something the loop finishes). Subclasses say what
a connection does once its answer head has arrived.
"""

import os
import resource
import select
import socket
import struct
import time
from collections import deque

SCRATCH_BYTES = 1 << 20        # one read takes at most this much
HEAD_MAX_BYTES = 16384         # an answer head longer than this is an error
CONNECT_BATCH_MS = 1           # the loop wakes at least this often while connecting
LINGER_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close with RST, no TIME_WAIT
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)  # Linux 4.2

CONNECTING, HEAD, OPEN, DEAD = range(4)   # a connection's states


def now_ns():
    """CLOCK_MONOTONIC in ns: the same clock in every process of this machine."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


def bind_source(sock, address):
    """Makes a socket connect from this local address, its port chosen at connect()
    (IP_BIND_ADDRESS_NO_PORT), so a port need only be free for the whole 4-tuple:
    each source address has the local port range to the server to itself."""
    sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
    sock.bind((address, 0))


def cpu_seconds():
    """This process's user + system CPU time."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Conn:
    """One connection; subclasses add their own fields."""

    __slots__ = ("index", "sock", "fd", "state", "request", "head", "started_ns",
                 "open_ns", "error")

    def __init__(self, index, request):
        self.index = index          # the connection's number across all processes
        self.request = request      # the HTTP request bytes sent once connected
        self.head = b""             # the answer head as it arrives
        self.state = CONNECTING
        self.sock = None
        self.fd = -1
        self.started_ns = 0         # when connect() was called
        self.open_ns = 0            # when the answer head was complete
        self.error = None           # why it failed or ended, if it did


class Loop:
    """An epoll loop over connections plus the command pipe."""

    def __init__(self, pipe, port):
        self.pipe = pipe
        self.port = port
        self.epoll = select.epoll()
        self.epoll.register(pipe.fileno(), select.EPOLLIN)
        self.conns = {}              # fd -> Conn
        self.pending = deque()       # Conns not yet connected, in order
        self.pace = (0, 0.0)         # (start ns, connects per second) of the current batch
        self.paced = 0               # connects started in the current batch
        self.scratch = bytearray(SCRATCH_BYTES)
        self.view = memoryview(self.scratch)
        self.running = True

    # --- commands -------------------------------------------------------------

    def reply(self, *message):
        self.pipe.send(message)

    def on_command(self, name, args):
        """Handles one command; subclasses extend it."""
        if name == "stop":
            self.close_all()
            self.running = False
            self.reply("stopped")
        elif name == "cpu":
            self.reply("cpu", cpu_seconds())
        else:
            raise ValueError(f"unknown command {name}")

    # --- connecting ------------------------------------------------------------

    def connect(self, conns, rate, start_ns):
        """Queues conns to be connected at `rate` per second from start_ns on."""
        self.pending = deque(conns)
        self.pace = (start_ns, rate)
        self.paced = 0

    def _connect_due(self, now):
        start, rate = self.pace
        due = int((now - start) * rate / 1e9) + 1
        while self.pending and self.paced < due and self.may_connect():
            self._open(self.pending.popleft())
            self.paced += 1

    def _open(self, conn):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.before_connect(sock, conn)
        conn.sock, conn.fd, conn.started_ns = sock, sock.fileno(), now_ns()
        self.conns[conn.fd] = conn
        code = sock.connect_ex(("127.0.0.1", self.port))
        if code not in (0, 115):  # EINPROGRESS
            self.fail(conn, f"connect: {os.strerror(code)}")
            return
        self.epoll.register(conn.fd, select.EPOLLOUT)

    def _on_connected(self, conn):
        code = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            self.fail(conn, f"connect: {os.strerror(code)}")
            return
        try:
            conn.sock.send(conn.request)   # a few hundred bytes: one send takes them
        except OSError as exc:
            self.fail(conn, f"send request: {exc.strerror}")
            return
        conn.state = HEAD
        self.epoll.modify(conn.fd, select.EPOLLIN)

    def _on_head(self, conn):
        try:
            data = conn.sock.recv(HEAD_MAX_BYTES)
        except BlockingIOError:
            return
        except OSError as exc:
            self.fail(conn, f"read answer: {exc.strerror}")
            return
        if not data:
            self.fail(conn, "closed before answering")
            return
        conn.head += data
        end = conn.head.find(b"\r\n\r\n")
        if end < 0:
            if len(conn.head) > HEAD_MAX_BYTES:
                self.fail(conn, "answer head too long")
            return
        head, rest = conn.head[:end + 4], conn.head[end + 4:]
        conn.head = head
        conn.open_ns = now_ns()
        conn.state = OPEN
        self.on_open(conn, head, rest)

    def may_connect(self):
        """Whether the next queued connection may start now (a subclass may bound
        how many are in flight); checked before each, within the pace."""
        return True

    def before_connect(self, sock, conn):
        """A new socket, about to connect for conn (a subclass may bind it)."""

    def on_open(self, conn, head, rest):
        """The answer head arrived; rest is what followed it in the same read."""
        raise NotImplementedError

    def on_ready(self, conn, events):
        """An OPEN connection is readable (or writable, if it asked for EPOLLOUT)."""
        raise NotImplementedError

    def receive(self, conn):
        """One read of an OPEN connection: its bytes (a view of the scratch buffer,
        valid until the next read), or None when there was nothing to read or the
        connection ended (it has failed then)."""
        try:
            n = conn.sock.recv_into(self.scratch)
        except BlockingIOError:
            return None
        except OSError as exc:
            self.fail(conn, f"read: {exc.strerror}")
            return None
        if n == 0:
            self.fail(conn, "closed by the server")
            return None
        return self.view[:n]

    def fail(self, conn, reason):
        """Ends a connection with a reason; it stays in `conns` for the figures."""
        if conn.state == DEAD:
            return
        conn.state = DEAD
        conn.error = reason
        try:
            self.epoll.unregister(conn.fd)
        except (OSError, ValueError):
            pass
        conn.sock.close()
        self.on_dead(conn)

    def on_dead(self, conn):
        """A connection ended (subclasses count it)."""

    def close_all(self):
        """Closes every connection with RST (no TIME_WAIT left behind)."""
        for conn in self.conns.values():
            if conn.state != DEAD:
                try:
                    conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
                except OSError:
                    pass
                conn.state = DEAD
                conn.sock.close()
        self.epoll.close()

    # --- the loop -------------------------------------------------------------------

    def timeout(self, now):
        """Seconds until the loop must wake for timed work (None: no timed work)."""
        return None

    def tick(self, now):
        """Timed work, run after every wake-up."""

    def run(self):
        pipe_fd = self.pipe.fileno()
        conns = self.conns
        while self.running:
            now = now_ns()
            if self.pending:
                self._connect_due(now)
            wait = self.timeout(now)
            if self.pending:
                wait = CONNECT_BATCH_MS / 1000 if wait is None else min(wait, CONNECT_BATCH_MS / 1000)
            for fd, events in self.epoll.poll(-1 if wait is None else max(wait, 0)):
                if fd == pipe_fd:
                    while self.running and self.pipe.poll():
                        name, args = self.pipe.recv()
                        self.on_command(name, args)
                    continue
                conn = conns.get(fd)
                if conn is None:
                    continue
                state = conn.state
                if state == OPEN:
                    self.on_ready(conn, events)
                elif state == CONNECTING:
                    self._on_connected(conn)
                elif state == HEAD:
                    self._on_head(conn)
            if not self.running:
                break
            self.tick(now_ns())


def serve(loop_class, pipe, *args):
    """A client process's main: runs loop_class(pipe, *args) until told to stop."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    loop = loop_class(pipe, *args)
    try:
        loop.run()
    except KeyboardInterrupt:  # Ctrl-C reaches the whole process group: the orchestrator stops us
        return
    except BaseException as exc:  # tell the orchestrator, then die
        try:
            pipe.send(("error", f"{type(exc).__name__}: {exc}"))
        finally:
            raise
