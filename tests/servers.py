"""Real processes: redis-server and `gunicorn -c gunicorn.conf.py wsgi:app`.

The one place that starts them, for the integration tests, the browser tests,
`make screenshots` and the benchmark (bench/servers.py builds on these
classes). Each runs on a free port (never 6379) in a session of its own and
is stopped with SIGTERM, then SIGKILL of its whole process group if anything
of it is left after a grace period. `Socket`, `EventStream` and the Server's
`post`, `join` and `archive` are the chat as a test client uses it.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

import requests
import websocket

PROJECT = Path(__file__).resolve().parent.parent
GUNICORN = Path(sys.executable).with_name("gunicorn")  # this interpreter's environment's
REDIS_SERVER = shutil.which("redis-server")
START_TIMEOUT = 30.0  # seconds a process may take to answer after it is started
STOP_GRACE = 15.0     # seconds after SIGTERM before SIGKILL (gunicorn's graceful_timeout is 10)


def free_port():
    """A TCP port free on 127.0.0.1 now, never Redis's usual 6379."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port != 6379:
            return port


def wait_until(predicate, timeout=10.0, interval=0.02, message="condition"):
    """Polls predicate until it returns a true value; fails after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class Process:
    """A program on `self.port`, started in a session of its own by `_spawn`."""

    name = "process"

    def __init__(self, port=None):
        self.port = port or free_port()
        self.process = None

    def _spawn(self, args, ready, **popen):
        """Starts args and waits until ready() is true; kills it again if that fails."""

        def started():
            if self.process.poll() is not None:
                raise AssertionError(f"{self.name} on {self.port} exited with "
                                     f"{self.process.returncode}{self._exit_details()}")
            return ready()

        try:
            self.process = subprocess.Popen(args, start_new_session=True, **popen)
            wait_until(started, timeout=START_TIMEOUT, message=f"{self.name} on {self.port}")
        except BaseException:
            self.kill()
            raise
        return self

    def _exit_details(self):
        return ""

    def stop(self, timeout=STOP_GRACE):
        """SIGTERM (graceful), then SIGKILL of the process group if anything lingers."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        self.kill()

    def kill(self):
        """SIGKILL the whole process group: no clean-up."""
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=10)
        self.process = None


def self_signed_certificate(directory):
    """(cert.pem, key.pem) in directory: a self-signed certificate for 127.0.0.1."""
    cert, key = Path(directory) / "cert.pem", Path(directory) / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1"],
                   check=True, capture_output=True)
    return cert, key


class RedisServer(Process):
    """A redis-server on a free port, keeping nothing on disk: a restart empties it.

    With tls=True it speaks only TLS, with a self-signed certificate made for
    it (as a hosted Redis often does: clients connect with ssl_cert_reqs=none).
    """

    name = "redis-server"

    def __init__(self, workdir, tls=False):
        super().__init__()
        self.workdir = Path(workdir)
        self.tls = tls

    @property
    def url(self):
        if self.tls:
            return f"rediss://127.0.0.1:{self.port}/0?ssl_cert_reqs=none"
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self):
        self.workdir.mkdir(parents=True, exist_ok=True)
        listen = ["--port", str(self.port)]
        if self.tls:
            cert, key = self_signed_certificate(self.workdir)
            listen = ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(cert),
                      "--tls-key-file", str(key), "--tls-auth-clients", "no"]
        return self._spawn(
            [REDIS_SERVER or "redis-server", *listen, "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(self.workdir)],
            lambda: port_open(self.port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def restart(self):
        """Stops Redis and starts it again, empty, on the same port."""
        self.stop()
        self.start()


class RedisCluster:
    """A Redis Cluster of 3 masters and 3 replicas on free ports, started and
    stopped by scripts/redis-cluster.sh (the README's way to try one), with a
    short node timeout so a killed master's replica takes over within seconds."""

    SCRIPT = PROJECT / "scripts" / "redis-cluster.sh"
    NODE_TIMEOUT_MS = 2000

    def __init__(self, workdir):
        self.workdir = Path(workdir)
        self.ports = []

    def start(self):
        env = {**os.environ, "NODE_TIMEOUT": str(self.NODE_TIMEOUT_MS)}
        subprocess.run([str(self.SCRIPT), "start", str(self.workdir)], check=True, env=env,
                       capture_output=True, timeout=120)
        self.ports = [int(port) for port in (self.workdir / "ports").read_text().split()]
        return self

    def stop(self):
        subprocess.run([str(self.SCRIPT), "stop", str(self.workdir)], check=False,
                       capture_output=True, timeout=60)

    def url(self, port=None):
        return f"redis://127.0.0.1:{port or self.ports[0]}"

    def client(self, port):
        import redis
        return redis.Redis(port=port, socket_timeout=5)

    def nodes(self):
        """{port: (id, role, master id or "-", slots)} as a live node sees them."""
        for port in self.ports:
            answer = subprocess.run(["redis-cli", "-p", str(port), "cluster", "nodes"],
                                    capture_output=True, text=True, timeout=10)
            if answer.returncode == 0 and "myself" in answer.stdout:
                text = answer.stdout
                break
        nodes = {}
        for line in text.strip().splitlines():
            fields = line.split()
            port = int(fields[1].split("@")[0].rsplit(":", 1)[1])
            role = "master" if "master" in fields[2] else "replica"
            if "fail" in fields[2]:
                role += ",fail"
            nodes[port] = (fields[0], role, fields[3], fields[8:])
        return nodes

    def masters(self):
        return sorted(port for port, (_, role, _, _) in self.nodes().items() if role == "master")

    def slot(self, key):
        from redis.crc import key_slot
        return key_slot(key.encode())

    def owner(self, key):
        """The port of the live master that owns key's slot (None: none does now)."""
        slot = self.slot(key)
        for port, (_, role, _, slots) in self.nodes().items():
            if role != "master":
                continue
            for span in slots:
                if span.startswith("["):  # a slot being migrated or imported
                    continue
                first, _, last = span.partition("-")
                if int(first) <= slot <= int(last or first):
                    return port
        return None

    def kill(self, port):
        """SIGKILL one node: no clean-up, as a crashed host."""
        pid = int((self.workdir / f"redis-{port}.pid").read_text())
        os.kill(pid, signal.SIGKILL)

    def migrate(self, key, to_port):
        """Moves key's slot, with its keys, from its master to the master on to_port
        (CLUSTER SETSLOT ... IMPORTING/MIGRATING, MIGRATE, SETSLOT ... NODE)."""
        slot, source = self.slot(key), self.owner(key)
        nodes = self.nodes()
        src, dst = self.client(source), self.client(to_port)
        dst.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", nodes[source][0])
        src.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", nodes[to_port][0])
        while keys := src.execute_command("CLUSTER GETKEYSINSLOT", slot, 100):
            src.execute_command("MIGRATE", "127.0.0.1", to_port, "", 0, 5000, "KEYS", *keys)
        for port in self.masters():
            self.client(port).execute_command("CLUSTER SETSLOT", slot, "NODE", nodes[to_port][0])


class Server(Process):
    """`gunicorn -c gunicorn.conf.py wsgi:app` with the given environment, logging
    to gunicorn-<port>.log in log_dir; started once /healthz answers (200, or 503
    while Redis is away)."""

    name = "gunicorn"

    def __init__(self, redis_url=None, workers=1, port=None, log_dir=None, **env):
        super().__init__(port)
        self.env = dict(os.environ)
        self.env.pop("REDIS_URL", None)
        self.env.update({"PORT": str(self.port), "HOST": "127.0.0.1",
                         "WEB_CONCURRENCY": str(workers)})
        if redis_url:
            self.env["REDIS_URL"] = redis_url
        self.env.update({k: str(v) for k, v in env.items()})
        self.log_path = Path(log_dir or "/tmp") / f"gunicorn-{self.port}.log"
        self._log = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def ws_url(self, **query):
        return f"ws://127.0.0.1:{self.port}/websocket/room/socket?{urlencode(query)}"

    def start(self):
        self._log = open(self.log_path, "ab")
        return self._spawn([str(GUNICORN), "-c", "gunicorn.conf.py", "wsgi:app"], self._healthy,
                           cwd=PROJECT, env=self.env, stdout=self._log, stderr=subprocess.STDOUT)

    def _healthy(self):
        try:
            return requests.get(self.url + "/healthz", timeout=1).status_code in (200, 503)
        except requests.RequestException:
            return False

    def _exit_details(self):
        return f"; see {self.log_path}:\n{self.log()}"

    def log(self):
        return self.log_path.read_text(errors="replace")

    # --- the chat, as a client uses it ---

    def try_post(self, room, text, user="poster"):
        """Posts a message through the long-polling API: the event, or None on an error."""
        response = requests.post(f"{self.url}/longpolling/room/messages",
                                 params={"user": user, "room": room}, data={"message": text},
                                 timeout=5)
        return response.json() if response.status_code == 201 else None

    def post(self, room, text, user="poster"):
        """Posts a message and returns the event; fails unless the answer is 201."""
        event = self.try_post(room, text, user)
        assert event is not None, f"posting {text[:40]!r} to {room} failed"
        return event

    def archive(self, room):
        """The room's archive, read through the API; None when the server answers an error."""
        try:
            response = requests.get(f"{self.url}/longpolling/room/messages",
                                    params={"room": room}, timeout=5)
        except requests.RequestException:
            return None
        return response.json() if response.status_code == 200 else None

    def join(self, room, user, **query):
        """A Socket in room that has read up to its own join (kept in .history)."""
        sock = Socket(self.ws_url(user=user, room=room, **query))
        sock.history = sock.recv_until(lambda e: e["type"] == "join" and e["user"] == user)
        return sock

    def stream(self, room, user, headers=None, rcvbuf=None, **query):
        """An open EventStream in room that has read up to its own join (kept in .history)."""
        query = urlencode({"user": user, "room": room, **query})
        events = EventStream(self.port, f"/sse/room/events?{query}", headers, rcvbuf=rcvbuf)
        assert events.status == 200, events.body
        events.history = events.recv_until(lambda e: e["type"] == "join" and e["user"] == user)
        return events

    def worker_pids(self):
        """The pids of the master's live children (its workers)."""
        out = subprocess.run(["pgrep", "-P", str(self.process.pid)],
                             capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]

    def connections(self, pid, peer_ports):
        """How many of the connections from peer_ports a process holds."""
        inodes = set()
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
        held = set()  # by inode: a table read while it changes may list a socket twice
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                local_port = int(fields[1].rsplit(":", 1)[1], 16)
                peer_port = int(fields[2].rsplit(":", 1)[1], 16)
                if (local_port == self.port and peer_port in peer_ports
                        and fields[3] == "01" and fields[9] in inodes):
                    held.add(fields[9])
        return len(held)

    def kill(self):
        super().kill()
        if self._log is not None:
            self._log.close()
            self._log = None


class Socket:
    """A WebSocket test client that reads events as dicts."""

    def __init__(self, url, timeout=5.0, **options):
        self.ws = websocket.create_connection(url, timeout=timeout, **options)
        self.close_reason = ""  # the server's, once recv_close has read its close frame

    def send(self, text):
        self.ws.send(text)

    def recv(self, timeout=5.0):
        """The next event (a dict); fails if none comes within timeout."""
        self.ws.settimeout(timeout)
        opcode, data = self.ws.recv_data()
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            raise ConnectionError(f"closed: {close_code(data)}")
        return json.loads(data)

    def recv_until(self, predicate, timeout=5.0):
        """Events up to and including the first that matches predicate."""
        deadline = time.monotonic() + timeout
        seen = []
        while True:
            event = self.recv(max(0.01, deadline - time.monotonic()))
            seen.append(event)
            if predicate(event):
                return seen

    def recv_close(self, timeout=5.0):
        """Reads until the close frame and answers it, as a browser does.

        Returns (code, events read before it); the reason is kept in close_reason.
        """
        self.ws.settimeout(timeout)
        events = []
        while True:
            frame = self.ws.recv_frame()
            if frame.opcode == websocket.ABNF.OPCODE_CLOSE:
                self.close()
                self.close_reason = frame.data[2:].decode("utf-8", "replace")
                return close_code(frame.data), events
            if frame.opcode == websocket.ABNF.OPCODE_TEXT:
                events.append(json.loads(frame.data))

    def close(self):
        try:
            self.ws.close(timeout=1)
        except Exception:
            pass


class EventStream:
    """A server-sent events client on a real socket: the answer's head, then events."""

    def __init__(self, port, path, headers=None, timeout=5.0, rcvbuf=None):
        self.sock = socket.socket()
        if rcvbuf:  # a small receive buffer: a reader that stops reading is soon noticed
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Accept: text/event-stream"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.buffer = b""
        self.status, self.headers = self._head()
        self.body = self._body() if self.status != 200 else None

    def _more(self):
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("the stream ended")
        self.buffer += data

    def _head(self):
        while b"\r\n\r\n" not in self.buffer:
            self._more()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        status, *fields = head.decode().split("\r\n")
        headers = dict(field.split(": ", 1) for field in fields)
        return int(status.split()[1]), {k.lower(): v for k, v in headers.items()}

    def _body(self):
        while len(self.buffer) < int(self.headers["content-length"]):
            self._more()
        return json.loads(self.buffer)

    def record(self, timeout=5.0):
        """The next record's lines (a record ends with a blank line)."""
        self.sock.settimeout(timeout)
        while b"\n\n" not in self.buffer:
            self._more()
        record, self.buffer = self.buffer.split(b"\n\n", 1)
        return record.decode().split("\n")

    def recv(self, timeout=5.0):
        """The next event (a dict), skipping comments and the retry field."""
        while True:
            lines = self.record(timeout)
            data = [line[6:] for line in lines if line.startswith("data: ")]
            if data:
                event = json.loads(data[0])
                assert lines[0] == f"id: {event['id']}", lines
                return event

    def recv_until(self, predicate, timeout=5.0):
        """Events up to and including the first that matches predicate."""
        deadline = time.monotonic() + timeout
        seen = []
        while True:
            seen.append(self.recv(max(0.01, deadline - time.monotonic())))
            if predicate(seen[-1]):
                return seen

    def ended(self, timeout=5.0):
        """Reads until the server closes the stream; the events read meanwhile."""
        events = []
        try:
            while True:
                events.append(self.recv(timeout))
        except (EOFError, ConnectionError):
            return events

    def close(self):
        self.sock.close()


def close_code(data):
    return int.from_bytes(data[:2], "big") if len(data) >= 2 else None


def assert_chained(events):
    """Each event's prev is the id of the one before it: nothing between them was missed."""
    for before, after in zip(events, events[1:]):
        assert after["prev"] == before["id"], (before, after)
