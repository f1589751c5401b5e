"""A client process of long-poll waiters: one GET each, then wait for its answer.

Each waiter I asks GET /longpolling/room/messages?user=wI&room=R&lastReceived=N
(with a user, as the pages do, so its presence is written too) on its own
connection (Connection: close) and records when its whole answer has arrived;
`collect` reports status codes, bodies that do not carry the expected event,
and the answer times.
"""

import json
import select
from collections import Counter

from .loop import CONNECTING, DEAD, HEAD, OPEN, Conn, Loop, now_ns

READ_EVENTS = select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR


def poll_request(port, room, last_received, user):
    return (f"GET /longpolling/room/messages?user={user}&room={room}&lastReceived={last_received}"
            f" HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n").encode()


def carries(body, text):
    """Whether body is a JSON array of events, one of them a message with this text."""
    try:
        events = json.loads(body)
    except ValueError:
        return False
    return isinstance(events, list) and any(
        isinstance(e, dict) and e.get("type") == "message" and e.get("text") == text
        for e in events)


class LpConn(Conn):
    __slots__ = ("status", "length", "body", "done_ns")

    def __init__(self, index, request):
        super().__init__(index, request)
        self.status = None     # the answer's status code
        self.length = None     # its Content-Length
        self.body = b""
        self.done_ns = 0       # when the whole answer had arrived


class LpLoop(Loop):
    """Serves `poll` and `collect` (and the base's stop, cpu)."""

    def __init__(self, pipe, port):
        super().__init__(pipe, port)
        self.waiting = None     # the poll command's answer is due once every request is out
        self.collecting = None  # (expected text, deadline ns) while collecting

    def on_command(self, name, args):
        """poll(room, last_received, indexes, rate, start_ns): ("polling", figures) once
        every request is written. collect(text, deadline_ns): ("answers", figures) once
        every waiter is answered or failed, or at the deadline."""
        if name == "poll":
            self.connect([LpConn(i, poll_request(self.port, args["room"], args["last_received"], f"w{i}"))
                          for i in args["indexes"]], args["rate"], args["start_ns"])
            self.waiting = True
        elif name == "collect":
            self.collecting = (args["text"], args["deadline_ns"])
        else:
            super().on_command(name, args)

    def on_open(self, conn, head, rest):
        lines = head.split(b"\r\n")
        conn.status = int(lines[0].split()[1])
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                conn.length = int(value)
        self.add_body(conn, rest)

    def on_ready(self, conn, events):
        try:
            data = conn.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError as exc:
            self.fail(conn, f"read: {exc.strerror}")
            return
        if not data:
            if conn.length is None:  # no Content-Length: the body ends with the connection
                self.finish(conn)
            else:
                self.fail(conn, "closed before the whole answer")
            return
        self.add_body(conn, data)

    def add_body(self, conn, data):
        conn.body += data
        if conn.length is not None and len(conn.body) >= conn.length:
            self.finish(conn)

    def finish(self, conn):
        conn.done_ns = now_ns()
        conn.state = DEAD
        self.epoll.unregister(conn.fd)
        conn.sock.close()

    def timeout(self, now):
        if self.collecting is not None:
            return max(0, self.collecting[1] - now) / 1e9
        return 0.05 if self.waiting else None

    def tick(self, now):
        conns = self.conns.values()
        if self.waiting and not self.pending and all(c.state != CONNECTING for c in conns):
            self.waiting = None
            self.reply("polling", {"waiters": sum(1 for c in conns if c.state in (HEAD, OPEN)),
                                   "errors": dict(Counter(c.error for c in conns if c.error))})
        if self.collecting is not None:
            text, deadline = self.collecting
            if now >= deadline or all(c.state == DEAD for c in conns):
                self.collecting = None
                self.reply("answers", self.answers(text))

    def answers(self, text):
        """Status codes, failures, wrong bodies and answer times of every waiter."""
        statuses, wrong = Counter(), Counter()
        for conn in self.conns.values():
            if conn.done_ns:
                statuses[conn.status] += 1
                if not carries(conn.body, text):
                    wrong[conn.body[:200].decode("utf-8", "replace")] += 1
        return {"statuses": dict(statuses), "wrong_body": sum(wrong.values()),
                "wrong_examples": dict(wrong.most_common(3)),
                "unanswered": sum(1 for c in self.conns.values() if not c.done_ns and not c.error),
                "errors": dict(Counter(c.error for c in self.conns.values() if c.error)),
                "done_ns": [c.done_ns for c in self.conns.values() if c.done_ns]}
