"""A long-poll listener: one request waiting for the events after lastReceived.

Its answer is written like a WebSocket frame: when events come, the hub hands
the poll the room's batch, and the poll writes a complete HTTP answer (built
once per batch, shared by every poll that gets the same one) to its socket
with a non-blocking write. The request then only finishes what the socket did
not take, and tells gunicorn the answer is out. Without a socket (Flask's test
client), the request answers with the JSON body itself.
"""

from flask import Response
from gevent.event import Event

from .config import SECURITY_HEADERS
from .writer import AnsweredOnSocket, write_now


def json_array(events):
    """A batch's events as one JSON array."""
    return b"[" + b",".join([raw for _, raw in events]) + b"]"


def http_answer(events, keep_alive):
    """A complete 200 answer carrying a batch's events as a JSON array."""
    body = json_array(events)
    head = [b"HTTP/1.1 200 OK", b"Content-Type: application/json",
            b"Content-Length: %d" % len(body),
            b"Connection: keep-alive" if keep_alive else b"Connection: close"]
    head += [f"{name}: {value}".encode() for name, value in SECURITY_HEADERS.items()]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


def answer_keeping_alive(events):
    return http_answer(events, keep_alive=True)


def answer_closing(events):
    return http_answer(events, keep_alive=False)


def keeps_alive(environ):
    """Whether an answer to this request may keep the connection open (as gunicorn decides)."""
    return (environ.get("SERVER_PROTOCOL") == "HTTP/1.1"
            and "close" not in environ.get("HTTP_CONNECTION", "").lower())


class LongPoll:
    """One long poll in a room; answered once, by the first batch it is handed."""

    transport = "longpolling"

    def __init__(self, room, environ, user=None):
        self.room = room
        self.user = user
        self._sock = environ.get("gunicorn.socket")  # None under the test client
        self._answer = answer_keeping_alive if keeps_alive(environ) else answer_closing
        self._answered = Event()
        self._body = None       # the answer's JSON, when the request writes it
        self._rest = b""        # what the socket did not take of the hub's answer

    def deliver(self, batch):
        """Answers with the batch; returns how many events that was (0 if answered already)."""
        if self._answered.is_set():
            return 0
        self._answered.set()
        if self._sock is None:
            self._body = batch.encoded(json_array)
            return len(batch)
        answer = batch.encoded(self._answer)
        try:
            self._rest = memoryview(answer)[write_now(self._sock.fileno(), answer):]
        except OSError:
            pass  # the client went away: nothing left to say
        return len(batch)

    def ping(self):
        """Nothing to do: a poll ends within CHAT_LONGPOLL_TIMEOUT."""

    def close(self, code=None, reason=""):
        """Ends the poll with no events; the page polls again (elsewhere, when this process stops)."""
        if not self._answered.is_set():
            self._answered.set()
            self._body = b"[]"

    def wait(self, timeout):
        """Waits for an answer; after timeout the poll ends with no events."""
        if not self._answered.wait(timeout):
            self.close()

    def response(self):
        """What the view returns: the answer written on the socket, or the JSON body."""
        if self._body is not None:
            return Response(self._body, mimetype="application/json")
        if self._rest:
            self._sock.sendall(self._rest)
        return AnsweredOnSocket()

