"""Real processes for the integration tests: redis-server and gunicorn.

Each test that needs them starts its own on free ports (never 6379), talks to
them over real sockets, and stops them (SIGTERM, then SIGKILL) when it ends.
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

import requests
import websocket

PROJECT = Path(__file__).resolve().parent.parent
GUNICORN = Path(sys.executable).with_name("gunicorn")
REDIS_SERVER = shutil.which("redis-server")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


class RedisServer:
    """A redis-server on a free port, keeping nothing on disk: a restart empties it."""

    def __init__(self, workdir):
        self.port = free_port()
        self.workdir = Path(workdir)
        self.process = None

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self):
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: port_open(self.port), message=f"redis on {self.port}")
        return self

    def stop(self):
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    def restart(self):
        """Stops Redis and starts it again, empty, on the same port."""
        self.stop()
        self.start()


class Server:
    """`gunicorn -c gunicorn.conf.py wsgi:app` with the given environment."""

    def __init__(self, redis_url=None, workers=1, port=None, log_dir=None, **env):
        self.port = port or free_port()
        self.env = dict(os.environ)
        self.env.pop("REDIS_URL", None)
        self.env.update({"PORT": str(self.port), "HOST": "127.0.0.1",
                         "WEB_CONCURRENCY": str(workers)})
        if redis_url:
            self.env["REDIS_URL"] = redis_url
        self.env.update({k: str(v) for k, v in env.items()})
        self.log_path = Path(log_dir or "/tmp") / f"gunicorn-{self.port}.log"
        self.process = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def ws_url(self, **query):
        from urllib.parse import urlencode
        return f"ws://127.0.0.1:{self.port}/websocket/room/socket?{urlencode(query)}"

    def start(self):
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [str(GUNICORN), "-c", "gunicorn.conf.py", "wsgi:app"], cwd=PROJECT,
            env=self.env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_until(self._healthy, timeout=20, message=f"gunicorn on {self.port}")
        return self

    def _healthy(self):
        if self.process.poll() is not None:
            raise AssertionError(f"gunicorn exited early; see {self.log_path}:\n{self.log()}")
        try:
            return requests.get(self.url + "/healthz", timeout=1).status_code in (200, 503)
        except requests.RequestException:
            return False

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
        count = 0
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                local_port = int(fields[1].rsplit(":", 1)[1], 16)
                peer_port = int(fields[2].rsplit(":", 1)[1], 16)
                if (local_port == self.port and peer_port in peer_ports
                        and fields[3] == "01" and fields[9] in inodes):
                    count += 1
        return count

    def stop(self, timeout=15):
        """SIGTERM the master (graceful), SIGKILL the group if it lingers."""
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
        """SIGKILL the whole process group: master and workers, no clean-up."""
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=10)
        self.process = None
        self._log.close()


class Socket:
    """A WebSocket test client that reads events as dicts."""

    def __init__(self, url, timeout=5.0, **options):
        self.ws = websocket.create_connection(url, timeout=timeout, **options)

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

        Returns (code, events read before it).
        """
        self.ws.settimeout(timeout)
        events = []
        while True:
            frame = self.ws.recv_frame()
            if frame.opcode == websocket.ABNF.OPCODE_CLOSE:
                self.close()
                return close_code(frame.data), events
            if frame.opcode == websocket.ABNF.OPCODE_TEXT:
                events.append(json.loads(frame.data))

    def close(self):
        try:
            self.ws.close(timeout=1)
        except Exception:
            pass


def close_code(data):
    return int.from_bytes(data[:2], "big") if len(data) >= 2 else None
