"""The socket writer: non-blocking writes, a backlog, a drainer only while needed."""

import gevent
import pytest

from chat_app.writer import SocketWriter
from tests.servers import wait_until


@pytest.fixture
def pair(socket_pair):
    yield socket_pair
    for writer in WRITERS:  # as a listener does when its connection ends
        writer.stop()
    WRITERS.clear()


WRITERS = []


def make_writer(sock):
    WRITERS.append(SocketWriter(sock))
    return WRITERS[-1]


def fill(writer, chunk, events=1):
    """Writes chunk until the socket takes no more; returns how many were written."""
    count = 0
    while not writer.draining:
        writer.write(chunk, events)
        count += 1
    return count


def read(peer, size, timeout=5):
    data = b""
    with gevent.Timeout(timeout):
        while len(data) < size:
            data += peer.recv(65536)
    return data


def test_what_the_socket_takes_is_written_at_once_without_a_drainer(pair):
    server, peer = pair
    writer = make_writer(server)
    writer.write(b"hello", 1)
    assert not writer.draining and writer.waiting == 0
    assert read(peer, 5) == b"hello"


def test_the_backlog_is_drained_in_order_by_a_drainer_that_then_ends(pair):
    server, peer = pair
    writer = make_writer(server)
    chunks = [bytes([65 + i % 26]) * 3000 for i in range(40)]
    for chunk in chunks:
        writer.write(chunk, 1)
    assert writer.draining and writer.waiting > 0
    assert read(peer, 3000 * 40) == b"".join(chunks)
    wait_until(lambda: not writer.draining and writer.waiting == 0, timeout=2)


def test_waiting_counts_the_events_in_the_backlog(pair):
    server, _ = pair
    writer = make_writer(server)
    fill(writer, b"z" * 2000)
    assert writer.waiting == 1
    writer.write(b"z" * 2000, 3)
    writer.write(b"ping", 0)
    assert writer.waiting == 4


def read_until(peer, end, timeout=5):
    data = b""
    with gevent.Timeout(timeout):
        while not data.endswith(end):
            data += peer.recv(65536)
    return data


def test_dropping_unstarted_chunks_keeps_only_a_chunk_partly_written(pair):
    server, peer = pair
    writer = make_writer(server)
    count = fill(writer, b"p" * 3000)
    writer.write(b"q" * 3000, 1)
    writer.drop_unstarted()
    writer.write(b"END", 0)
    data = read_until(peer, b"END")
    # whole chunks only: the last p chunk is finished if it had begun, else dropped
    assert data in (b"p" * 3000 * count + b"END", b"p" * 3000 * (count - 1) + b"END")


def test_a_backlog_emptied_while_the_drainer_waits_ends_the_drainer(pair):
    """The drainer waits for the socket; an abort meanwhile (a closing
    listener) empties the backlog: the drainer ends without an error."""
    server, _ = pair
    writer = make_writer(server)
    fill(writer, b"d" * 3000)
    drainer = writer._drainer
    gevent.sleep(0.01)  # the drainer now waits for the socket
    writer.abort()
    drainer.join(timeout=2)
    assert drainer.successful() and not writer.draining


def test_a_peer_that_is_gone_aborts_the_writer(pair):
    server, peer = pair
    writer = make_writer(server)
    peer.close()
    writer.write(b"x" * 10000, 1)
    writer.write(b"x", 1)
    assert writer.closed and writer.waiting == 0


def test_flushed_waits_for_the_backlog(pair):
    server, peer = pair
    writer = make_writer(server)
    count = fill(writer, b"f" * 3000)
    assert not writer.flushed(0.05)  # nobody reads
    reader = gevent.spawn(read, peer, 3000 * count)
    assert writer.flushed(5)
    assert reader.get(timeout=5) == b"f" * 3000 * count
