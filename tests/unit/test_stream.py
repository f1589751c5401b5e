"""The event-stream listener on a socket pair, and the SSE route on the test client."""

import json
import socket

import gevent
import pytest

from chat_app.sequence import Batch
from chat_app.stream import KEEPALIVE, Stream, sse_text
from chat_app import writer
from chat_app.writer import AnsweredOnSocket
from tests.servers import wait_until


@pytest.fixture
def pair(socket_pair):
    return socket_pair


class Reader:
    """The browser's end: reads the answer's head, then event-stream records."""

    def __init__(self, sock):
        self.sock = sock
        self.buffer = b""

    def _more(self):
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("the stream ended")
        self.buffer += data

    def head(self, timeout=5):
        with gevent.Timeout(timeout):
            while b"\r\n\r\n" not in self.buffer:
                self._more()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        return head.decode()

    def record(self, timeout=5):
        """The next record (lines up to a blank line), as a list of lines."""
        with gevent.Timeout(timeout):
            while b"\n\n" not in self.buffer:
                self._more()
        record, self.buffer = self.buffer.split(b"\n\n", 1)
        return record.decode().split("\n")

    def events(self, count, timeout=5):
        """The next `count` events, skipping comments and the retry field."""
        events = []
        while len(events) < count:
            lines = self.record(timeout)
            data = [line[6:] for line in lines if line.startswith("data: ")]
            if data:
                event = json.loads(data[0])
                assert lines[0] == f"id: {event['id']}"
                events.append(event)
        return events

    def ended(self, timeout=5):
        with gevent.Timeout(timeout):
            try:
                while True:
                    self._more()
            except (EOFError, ConnectionError):
                return True


def batch(*ids, replay=False):
    return Batch([(i, b'{"id":%d,"type":"message"}' % i) for i in ids], replay=replay)


def make_stream(sock, send_queue=8):
    return Stream(sock, "lobby", "ada", send_queue=send_queue, ping_interval=25)


def test_a_record_is_an_id_line_and_a_data_line():
    assert sse_text([(7, b'{"id":7}'), (8, b'{"id":8}')]) == \
        b'id: 7\ndata: {"id":7}\n\nid: 8\ndata: {"id":8}\n\n'


def test_nothing_is_written_before_start_then_the_head_and_what_was_held(pair):
    server, browser = pair
    stream = make_stream(server)
    assert stream.deliver(batch(1, 2, replay=True)) == 2
    browser.setblocking(False)
    with pytest.raises(BlockingIOError):
        browser.recv(1)  # an error could still be answered instead
    browser.setblocking(True)
    stream.start(retry_ms=1000)
    stream.deliver(batch(3))
    reader = Reader(browser)
    head = reader.head()
    assert head.startswith("HTTP/1.1 200 OK\r\n")
    assert "Content-Type: text/event-stream; charset=utf-8" in head
    assert "Connection: close" in head and "Cache-Control: no-store" in head
    assert reader.record() == ["retry: 1000"]
    assert [e["id"] for e in reader.events(3)] == [1, 2, 3]


def test_a_keepalive_is_a_comment_line(pair):
    server, browser = pair
    stream = make_stream(server)
    stream.start(retry_ms=1000)
    stream.ping()
    reader = Reader(browser)
    reader.head()
    reader.record()
    assert reader.record() == [KEEPALIVE.decode().strip()]


def test_a_stream_that_does_not_read_is_ended(pair, monkeypatch):
    monkeypatch.setattr(writer, "STALL_GRACE", 1.0)
    server, browser = pair
    stream = make_stream(server, send_queue=8)
    stream.start(retry_ms=1000)
    big = Batch([(1, b'{"id":1,"text":"%s"}' % (b"z" * 2000))])
    stream.deliver(big)  # the head and this fit; what follows waits
    while stream.waiting <= 8 and not stream.close_reason:
        stream.deliver(big)
    assert stream.close_reason == ""  # only just over the queue: a brief stall is allowed
    wait_until(lambda: "too slow" in stream.close_reason, timeout=5)
    reader = Reader(browser)
    reader.head()
    with pytest.raises(EOFError):  # whole records, then the end
        while True:
            for line in reader.record():
                assert line in ("retry: 1000", "id: 1") or line.startswith('data: {"id":1,')


def test_a_replay_is_not_counted_against_the_send_queue(pair):
    server, browser = pair
    stream = make_stream(server, send_queue=1)
    stream.start(retry_ms=1000)
    for _ in range(20):
        stream.deliver(Batch([(1, b'{"id":1,"text":"%s"}' % (b"r" * 2000))], replay=True))
    assert stream.close_reason == ""


def test_close_ends_the_stream_and_run_returns(pair):
    server, browser = pair
    stream = make_stream(server)
    runner = gevent.spawn(stream.run)
    stream.start(retry_ms=1000)
    stream.close(1012, "server restarting")
    runner.get(timeout=5)
    assert Reader(browser).ended()


def test_run_returns_when_the_browser_goes_away(pair):
    server, browser = pair
    stream = make_stream(server)
    runner = gevent.spawn(stream.run)
    stream.start(retry_ms=1000)
    browser.close()
    runner.get(timeout=5)
    stream.deliver(batch(5))  # nobody to write to: dropped, no error


# --- the route, on the test client with a socket pair standing in for gunicorn's ---

def serve(app, query, headers, sock):
    """The route's answer to GET /sse/room/events, with sock standing in for gunicorn's."""
    with app.test_request_context("/sse/room/events?" + query, headers=headers,
                                  environ_overrides={"gunicorn.socket": sock}):
        return app.full_dispatch_request()


def open_stream(app, query, headers=None):
    """The route, serving in a greenlet; returns (greenlet, Reader, server socket)."""
    server, browser = socket.socketpair()
    return gevent.spawn(serve, app, query, headers or {}, server), Reader(browser), server


def post(http, room, text, user="bob"):
    return http.post(f"/sse/room/messages?user={user}&room={room}", data={"message": text}).json


def test_the_route_sends_the_archive_the_join_then_live_events_and_posts_the_leave(app, http):
    first = post(http, "s1", "first")
    second = post(http, "s1", "second")
    request, reader, server = open_stream(app, f"user=ada&room=s1&lastReceived={first['id']}")
    assert "200 OK" in reader.head()
    got = reader.events(2)
    assert got[0] == second and got[1]["type"] == "join" and got[1]["user"] == "ada"
    live = post(http, "s1", "live")
    assert reader.events(1) == [live]
    reader.sock.close()
    assert isinstance(request.get(timeout=5), AnsweredOnSocket)  # gunicorn writes nothing more
    wait_until(lambda: http.get("/longpolling/room/messages?room=s1").json[-1]["type"] == "leave")
    server.close()


def test_last_event_id_takes_precedence_over_last_received(app, http):
    ids = [post(http, "s2", f"m{i}")["id"] for i in range(3)]
    request, reader, server = open_stream(app, "user=ada&room=s2&lastReceived=0",
                                          headers={"Last-Event-ID": str(ids[1])})
    reader.head()
    got = reader.events(2)
    assert got[0]["id"] == ids[2] and got[1]["type"] == "join"
    reader.sock.close()
    request.get(timeout=5)
    server.close()


@pytest.mark.parametrize("query, headers", [
    ("user=ada&room=Bad!", {}),
    ("room=s3", {}),
    ("user=ada&room=s3&lastReceived=-1", {}),
    ("user=ada&room=s3", {"Last-Event-ID": "x1"}),
])
def test_bad_input_is_answered_as_json_before_the_stream(app, http, query, headers):
    response = http.get("/sse/room/events?" + query, headers=headers)
    assert response.status_code == 400 and "error" in response.json
    assert http.get("/longpolling/room/messages?room=s3").json == []  # no join posted


def test_while_the_store_is_down_the_stream_is_refused_with_503_as_json(app, http, monkeypatch):
    from chat_app.exceptions import StoreUnavailable

    def down(*args, **kwargs):
        raise StoreUnavailable("redis went away")

    for read in ("history", "join"):  # a join reads the archive with its own post
        monkeypatch.setattr(app.extensions["chat"].rooms, read, down)
    server, browser = socket.socketpair()
    response = http.get("/sse/room/events?user=ada&room=s4",
                        environ_overrides={"gunicorn.socket": server})
    assert response.status_code == 503 and "error" in response.json
    browser.setblocking(False)
    with pytest.raises(BlockingIOError):
        browser.recv(1)  # nothing of a stream was written
    server.close()
    browser.close()


def test_while_the_process_stops_a_stream_starts_and_ends_at_once(app, http):
    app.extensions["chat"].hub.shutdown()
    request, reader, server = open_stream(app, "user=ada&room=s5")
    assert "200 OK" in reader.head()  # an EventSource reconnects after this, quietly
    assert reader.record() == ["retry: 1000"]
    assert reader.ended()
    assert isinstance(request.get(timeout=5), AnsweredOnSocket)
    assert app.extensions["chat"].rooms.history("s5") == []  # no join posted
    server.close()
