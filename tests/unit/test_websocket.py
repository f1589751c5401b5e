"""take_socket: the request's socket object is given up, the connection is not."""

import gevent

from chat_app.websocket import take_socket


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
