"""Fixtures of the unit tests: no Redis server, no gunicorn, no browser."""

import socket

import pytest


@pytest.fixture
def socket_pair():
    """(server end, peer end): a connected socket pair with 4 KB buffers, so a few KB fill them."""
    server, peer = socket.socketpair()
    for end in (server, peer):
        end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        end.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    yield server, peer
    server.close()
    peer.close()
