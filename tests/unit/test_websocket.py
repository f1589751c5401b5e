"""A WebSocket after its handshake: the request's socket object is given up,
the connection is not; and a session that fails still ends its connection."""

import gevent

from chat_app.client import Client
from chat_app.exceptions import StoreUnavailable
from chat_app.websocket import _session, take_socket


def test_a_taken_socket_outlives_the_close_of_the_one_it_was_taken_from(socket_pair):
    request_socket, peer = socket_pair
    descriptor = request_socket.fileno()
    taken = take_socket(request_socket)
    request_socket.close()  # what gunicorn does as the request ends
    assert taken.fileno() == descriptor  # the same descriptor, not a dup
    taken.sendall(b"still open")
    with gevent.Timeout(5):
        assert peer.recv(10) == b"still open"
    taken.close()
    with gevent.Timeout(5):
        assert peer.recv(1) == b""


def test_a_session_that_fails_unexpectedly_ends_its_connection(socket_pair):
    class FailingChat:
        def join(self, client, after):
            raise RuntimeError("a bug")

    sock, peer = socket_pair
    client = Client(sock, "room", "ada", send_queue=64, max_message_chars=100)
    _session(FailingChat(), client, None, None)  # logs the failure, does not raise
    assert sock.fileno() == -1
    with gevent.Timeout(5):
        assert peer.recv(1) == b""


def test_a_join_redis_refuses_is_closed_with_1011_and_its_cause_logged(socket_pair, caplog):
    class ChatWithoutRedis:
        def join(self, client, after):
            raise StoreUnavailable("Timeout reading from socket")

    sock, peer = socket_pair
    client = Client(sock, "room", "ada", send_queue=64, max_message_chars=100)
    peer.sendall(b"\x88\x82\x00\x00\x00\x00\x03\xf3")  # the peer answers the close: 1011
    with caplog.at_level("WARNING", logger="chat_app.websocket"):
        _session(ChatWithoutRedis(), client, None, None)
    assert client.close_code == 1011
    assert [r.getMessage() for r in caplog.records] == [
        "redis unavailable: Timeout reading from socket"]
