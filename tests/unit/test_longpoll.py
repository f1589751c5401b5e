"""The long-poll listener: one answer, written to its socket like a frame."""

import json
import socket

import gevent
import pytest

from chat_app.longpoll import LongPoll, http_answer, json_array
from chat_app.sequence import Batch
from chat_app.writer import AnsweredOnSocket


@pytest.fixture
def pair():
    server, browser = socket.socketpair()
    yield server, browser
    server.close()
    browser.close()


def environ(sock=None, protocol="HTTP/1.1", connection=""):
    env = {"SERVER_PROTOCOL": protocol, "HTTP_CONNECTION": connection}
    if sock is not None:
        env["gunicorn.socket"] = sock
    return env


def batch(*ids):
    return Batch([(i, b'{"id":%d}' % i) for i in ids])


def read_answer(sock, timeout=5):
    """A whole HTTP answer: (head, body)."""
    data = b""
    with gevent.Timeout(timeout):
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536)
        head, body = data.split(b"\r\n\r\n", 1)
        length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
        while len(body) < length:
            body += sock.recv(65536)
    return head.decode(), body


def test_the_answer_is_written_to_the_socket_and_gunicorn_told_so(pair):
    server, browser = pair
    poll = LongPoll("lobby", environ(server))
    assert poll.deliver(batch(1, 2)) == 2
    head, body = read_answer(browser)
    assert head.startswith("HTTP/1.1 200 OK") and "Connection: keep-alive" in head
    assert "Content-Type: application/json" in head and "X-Content-Type-Options: nosniff" in head
    assert [e["id"] for e in json.loads(body)] == [1, 2]
    assert isinstance(poll.response(), AnsweredOnSocket)


@pytest.mark.parametrize("protocol, connection, keep", [
    ("HTTP/1.1", "", True), ("HTTP/1.1", "Close", False), ("HTTP/1.0", "", False)])
def test_the_answer_keeps_the_connection_as_gunicorn_would(pair, protocol, connection, keep):
    server, browser = pair
    LongPoll("lobby", environ(server, protocol, connection)).deliver(batch(1))
    head, _ = read_answer(browser)
    assert ("Connection: keep-alive" in head) is keep and ("Connection: close" in head) is not keep


def test_without_a_socket_the_request_answers_with_the_body():
    poll = LongPoll("lobby", environ())
    poll.deliver(batch(3))
    response = poll.response()
    assert response.status_code == 200 and response.get_json() == [{"id": 3}]


def test_a_poll_is_answered_once():
    poll = LongPoll("lobby", environ())
    assert poll.deliver(batch(1)) == 1
    assert poll.deliver(batch(2)) == 0
    poll.close()
    assert poll.response().get_json() == [{"id": 1}]


def test_a_poll_that_times_out_or_is_closed_answers_an_empty_array():
    timed_out = LongPoll("lobby", environ())
    timed_out.wait(0.01)
    closed = LongPoll("lobby", environ())
    closed.close(1012, "restarting")
    assert timed_out.deliver(batch(1)) == 0 and closed.deliver(batch(1)) == 0
    assert timed_out.response().get_json() == [] and closed.response().get_json() == []


def test_a_poll_waits_until_it_is_answered():
    poll = LongPoll("lobby", environ())
    waiting = gevent.spawn(poll.wait, 5)
    gevent.sleep(0.01)
    assert not waiting.ready()
    poll.deliver(batch(4))
    waiting.get(timeout=1)
    assert poll.response().get_json() == [{"id": 4}]


def test_an_answer_the_socket_cannot_take_whole_is_finished_by_its_request(pair):
    server, browser = pair
    for end in (server, browser):
        end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        end.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    events = [(i, b'{"id":%d,"text":"%s"}' % (i, b"x" * 1000)) for i in range(1, 101)]
    poll = LongPoll("lobby", environ(server))
    poll.deliver(Batch(events))  # the socket takes a few KB of the 100 KB now
    finishing = gevent.spawn(poll.response)  # what the request's greenlet does
    expected = http_answer(events, True)
    received = b""
    with gevent.Timeout(5):
        while len(received) < len(expected):
            received += browser.recv(65536)
    assert isinstance(finishing.get(timeout=5), AnsweredOnSocket)
    assert received == expected


def test_the_body_is_the_events_as_one_json_array():
    assert json_array([(1, b'{"id":1}'), (2, b'{"id":2}')]) == b'[{"id":1},{"id":2}]'
    assert json_array([]) == b"[]"
