import time

import gevent
import pytest
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage

from chat_app import client as client_module
from chat_app import writer
from chat_app.client import PING_FRAME, Client, text_frame
from tests.servers import wait_until


class Peer:
    """The browser's end of a socket pair, speaking WebSocket with wsproto."""

    def __init__(self, sock):
        self.sock = sock
        self.conn = Connection(ConnectionType.CLIENT)

    def send(self, event):
        self.sock.sendall(self.conn.send(event))

    def events(self, until, timeout=5):
        """Reads events until `until(event)` is true; returns all of them."""
        seen = []
        with gevent.Timeout(timeout):
            while True:
                for event in self.conn.events():
                    seen.append(event)
                    if until(event):
                        return seen
                data = self.sock.recv(65536)
                self.conn.receive_data(data or None)


def is_close(event):
    return isinstance(event, CloseConnection)


def texts(events):
    """The whole text messages among events (wsproto hands out partial frames)."""
    whole, part = [], ""
    for event in events:
        if isinstance(event, TextMessage):
            part += event.data
            if event.message_finished:
                whole.append(part)
                part = ""
    return whole


@pytest.fixture
def pair(socket_pair):
    server, browser = socket_pair
    yield server, Peer(browser)
    for client in CLIENTS:  # no greenlet of a test's client outlives its socket
        client._writer.stop()
        if client._deadline is not None:
            client._deadline.kill()
    CLIENTS.clear()


CLIENTS = []


def make_client(sock, send_queue=8, max_chars=20):
    CLIENTS.append(Client(sock, "lobby", "ada", send_queue=send_queue, max_message_chars=max_chars))
    return CLIENTS[-1]


def test_text_frame_lengths():
    for size in (0, 125, 126, 65535, 65536):
        frame = text_frame(b"x" * size)
        conn = Connection(ConnectionType.CLIENT)
        conn.receive_data(frame)
        (event,) = conn.events()
        assert event.data == "x" * size and event.message_finished


def test_send_writes_at_once_without_a_writer(pair):
    sock, peer = pair
    client = make_client(sock)
    client.send(text_frame(b'{"id":1}') + text_frame(b'{"id":2}'), 2)
    assert client.waiting == 0
    assert texts(peer.events(lambda e: texts([e]) == ['{"id":2}'])) == ['{"id":1}', '{"id":2}']


def test_what_the_socket_does_not_take_is_drained_by_a_writer_that_then_ends(pair):
    sock, peer = pair
    client = make_client(sock, send_queue=1000)
    frame = text_frame(b"y" * 3000)
    sent = 0
    while not client.waiting:  # until the socket buffers are full
        client.send(frame, 1)
        sent += 1
    for _ in range(10):
        client.send(frame, 1)
    sent += 10
    assert client.waiting == 11
    events = []
    with gevent.Timeout(5):
        while len(texts(events)) < sent:
            events += peer.events(lambda e: isinstance(e, TextMessage) and e.message_finished)
    assert texts(events) == ["y" * 3000] * sent
    wait_until(lambda: client.waiting == 0, timeout=2)


@pytest.fixture
def short_grace(monkeypatch):
    """The too-slow rule's grace (writer.STALL_GRACE), shortened for the test."""
    monkeypatch.setattr(writer, "STALL_GRACE", 0.2)
    return 0.2


def stop_reading(client, frame, waiting):
    """Sends frame until the socket buffers are full and `waiting` events wait
    (or, on a machine so busy the grace passed meanwhile, the client is closed)."""
    while not client.waiting and client.close_code is None:
        client.send(frame, 1)
    while client.waiting < waiting and client.close_code is None:
        client.send(frame, 1)


def test_a_client_that_does_not_read_is_closed_with_1013(pair, short_grace):
    sock, peer = pair
    client = make_client(sock, send_queue=8)
    frame = text_frame(b"z" * 2000)
    stop_reading(client, frame, waiting=9)
    assert client.close_code is None  # 9 > 8 waiting, but only just: a brief stall is allowed
    started = time.monotonic()
    wait_until(lambda: client.close_code == 1013, timeout=2)  # once the oldest waited the grace
    assert time.monotonic() - started < short_grace + 0.5
    events = peer.events(is_close)
    assert events[-1].code == 1013
    assert all(t == "z" * 2000 for t in texts(events))  # whole frames, then the close frame


def test_a_client_within_its_send_queue_is_never_closed_for_a_stall(pair, short_grace):
    sock, peer = pair
    client = make_client(sock, send_queue=8)
    stop_reading(client, text_frame(b"z" * 2000), waiting=8)
    gevent.sleep(3 * short_grace)
    assert client.close_code is None


def test_a_client_that_stalls_briefly_then_reads_is_not_closed(pair, short_grace):
    sock, peer = pair
    client = make_client(sock, send_queue=8)
    frame = text_frame(b"z" * 2000)
    stop_reading(client, frame, waiting=30)  # far over the queue, for less than the grace
    sent = client.events_sent
    got = []
    while len(got) < sent:  # the reader catches up
        got += texts(peer.events(lambda e: isinstance(e, TextMessage) and e.message_finished))
    gevent.sleep(2 * short_grace)
    assert client.close_code is None and client.waiting == 0


def test_a_backlog_past_its_byte_bound_is_closed_at_once(pair, monkeypatch):
    monkeypatch.setattr(writer, "BACKLOG_MAX_BYTES", 50_000)
    sock, peer = pair
    client = make_client(sock, send_queue=1000)
    frame = text_frame(b"b" * 2000)
    while client.close_code is None:
        client.send(frame, 1)
    assert client.close_code == 1013 and client.events_sent < 100  # kernel buffers + 50 KB


def test_messages_reach_on_text_and_fragments_are_joined(pair):
    sock, peer = pair
    client = make_client(sock, max_chars=50)
    got = []
    runner = gevent.spawn(client.run, got.append)
    peer.send(TextMessage(data="hello"))
    peer.send(TextMessage(data="wor", message_finished=False))
    peer.send(TextMessage(data="ld"))
    wait_until(lambda: got == ["hello", "world"])
    peer.send(CloseConnection(code=1000))
    assert peer.events(is_close)[-1].code == 1000
    runner.get(timeout=5)  # the read pump ends after the closing handshake


def test_binary_frames_are_closed_with_1003(pair):
    sock, peer = pair
    client = make_client(sock)
    runner = gevent.spawn(client.run, lambda text: pytest.fail("no text expected"))
    peer.send(BytesMessage(data=b"\x00\x01"))
    assert peer.events(is_close)[-1].code == 1003
    peer.send(CloseConnection(code=1003))
    runner.get(timeout=5)


def test_a_message_far_over_the_limit_is_closed_with_1009_before_it_is_whole(pair, monkeypatch):
    monkeypatch.setattr(client_module, "WS_FRAME_SLACK_BYTES", 10)
    sock, peer = pair
    client = make_client(sock, max_chars=20)
    got = []
    runner = gevent.spawn(client.run, got.append)
    peer.send(TextMessage(data="x" * 20, message_finished=False))
    peer.send(TextMessage(data="x" * 20, message_finished=False))  # 40 > 20 + 10: not whole yet
    assert peer.events(is_close)[-1].code == 1009
    assert got == []
    peer.send(CloseConnection(code=1009))
    runner.get(timeout=5)


def test_invalid_utf8_is_closed_with_1007(pair):
    sock, peer = pair
    client = make_client(sock)
    runner = gevent.spawn(client.run, lambda text: None)
    peer.sock.sendall(bytes([0x81, 0x82, 0, 0, 0, 0, 0xC3, 0x28]))  # masked text "\xc3\x28"
    assert peer.events(is_close)[-1].code == 1007
    runner.get(timeout=5)


def test_ping_is_answered_through_the_write_path(pair):
    sock, peer = pair
    client = make_client(sock)
    gevent.spawn(client.run, lambda text: None)
    peer.send(Ping(payload=b"abc"))
    pong = peer.events(lambda e: isinstance(e, Pong))[-1]
    assert pong.payload == b"abc"


def test_keepalive_pings_then_closes_a_silent_peer(pair):
    sock, peer = pair
    client = make_client(sock)
    runner = gevent.spawn(client.run, lambda text: None)
    client.ping()
    assert isinstance(peer.events(lambda e: isinstance(e, Ping))[-1], Ping)
    client.ping()  # nothing heard since the last ping: closed, and the read pump ends
    runner.get(timeout=5)
    assert client.close_code == 1001


def test_an_answering_peer_stays_open(pair):
    sock, peer = pair
    client = make_client(sock)
    gevent.spawn(client.run, lambda text: None)
    for _ in range(3):
        client.ping()
        peer.events(lambda e: isinstance(e, Ping))
        peer.send(Pong())
        wait_until(lambda: client._heard)
    assert client.close_code is None
    assert PING_FRAME == b"\x89\x00"


def test_a_server_close_is_flushed_and_the_pump_ends_after_the_peer_answers(pair):
    sock, peer = pair
    client = make_client(sock)
    runner = gevent.spawn(client.run, lambda text: None)
    client.close(1012, "restarting")
    close = peer.events(is_close)[-1]
    assert (close.code, close.reason) == (1012, "restarting")
    peer.send(close.response())
    runner.get(timeout=5)
    client.send(text_frame(b"{}"), 1)  # nothing is written after the close


def test_a_closing_client_takes_no_more_events_and_counts_none(pair):
    from chat_app.sequence import Batch

    sock, peer = pair
    client = make_client(sock)
    batch = Batch([(1, b'{"id":1}'), (2, b'{"id":2}')])
    assert client.deliver(batch) == 2
    client.close(1012, "restarting")
    assert client.deliver(batch) == 0  # the hub counts what deliver returns as delivered
    events = peer.events(is_close)
    assert texts(events) == ['{"id":1}', '{"id":2}'] and events[-1].code == 1012


def test_the_socket_is_closed_when_the_read_pump_ends(pair):
    sock, peer = pair
    client = make_client(sock)
    runner = gevent.spawn(client.run, lambda text: None)
    client.close(1008, "token expired")
    assert peer.events(is_close)[-1].code == 1008
    peer.send(CloseConnection(code=1008))
    runner.get(timeout=5)
    assert sock.fileno() == -1
    with gevent.Timeout(5):
        assert peer.sock.recv(1) == b""  # the end of the connection, not a wait
