"""The pub/sub connection's replies: batches, sorting, confirmations (no Redis)."""

import socket
import time

import pytest

from gevent.lock import Semaphore

from chat_app.config import PUBSUB_SILENCE
from chat_app.pubsub import Confirmations, Link, read_batches, sort_replies, unread_bytes


class BufferedConnection:
    """A pub/sub connection with these replies already buffered, then closed."""

    def __init__(self, replies):
        self.replies = list(replies)

    def can_read(self, timeout=0):
        return bool(self.replies)

    def read_response(self, disconnect_on_error=True, push_request=False):
        if not self.replies:
            raise ConnectionError("closed")
        return self.replies.pop(0)


def test_messages_already_buffered_are_read_as_one_batch():
    replies = [[b"message", b"chat:lobby:events", b"%d %d {}" % (i - 1, i)] for i in range(1, 6)]
    batches = read_batches(BufferedConnection(replies), interval=0)
    assert next(batches) == replies
    with pytest.raises(ConnectionError):
        next(batches)


def test_other_pushes_on_the_connection_are_ignored():
    replies = [None, [b"pong", b""], [b"invalidate", [b"k"]],
               [b"subscribe", b"chat:a:events", 1], [b"message", b"chat:a:events", b"0 1 {}"],
               [b"unsubscribe", b"chat:b:events", 0], [b"message", b"chat:a:events", b"1 2 {}"]]
    assert sort_replies(replies) == ({b"chat:a:events": [b"0 1 {}", b"1 2 {}"]},
                                     [b"chat:a:events"], [])


def test_a_shards_replies_are_sorted_and_its_unsubscribes_reported():
    replies = [[b"ssubscribe", b"chat:{a}:events", 1], [b"smessage", b"chat:{a}:events", b"0 1 {}"],
               [b"sunsubscribe", b"chat:{b}:events", 0], b"PONG"]
    assert sort_replies(replies) == ({b"chat:{a}:events": [b"0 1 {}"]},
                                     [b"chat:{a}:events"], [b"chat:{b}:events"])


@pytest.mark.parametrize("events, ready", [
    (["sent", "confirmed"], [True]),
    (["sent", "sent", "confirmed", "confirmed"], [False, True]),  # subscribe, leave, subscribe
    (["sent", "sent", "sent", "confirmed", "confirmed", "confirmed"], [False, False, True]),
    (["confirmed"], [True]),  # a confirmation nobody counted: as before, ready
])
def test_a_room_is_ready_when_its_last_subscribe_is_confirmed(events, ready):
    confirmations, seen = Confirmations(), []
    for event in events:
        if event == "sent":
            confirmations.sent(b"chat:lobby:events")
        else:
            seen.append(confirmations.confirmed(b"chat:lobby:events"))
    assert seen == ready


def test_a_new_connection_waits_for_each_of_its_subscribes():
    confirmations = Confirmations([b"chat:hub", b"chat:a:events"])
    assert confirmations.confirmed(b"chat:a:events") is True
    assert confirmations.confirmed(b"chat:hub") is True


class Shards:
    """Nodes of a cluster, as a Link sees them (no connection is made here)."""

    sharded = True

    def client(self, node):
        return None


class Sent:
    def __init__(self):
        self.commands = []

    def send_command(self, *args):
        self.commands.append(args)


def test_a_shards_answer_to_our_own_sunsubscribe_is_not_taken_for_a_slot_move():
    link = Link("127.0.0.1:7000", Shards(), hub=None, lock=Semaphore())
    link._greenlet.kill()  # no reader: the connection is the recorder below
    link._conn = Sent()
    link.add("chat:{a}:events")
    link.remove("chat:{a}:events")
    assert link._conn.commands == [("SSUBSCRIBE", "chat:{a}:events"),
                                   ("SUNSUBSCRIBE", "chat:{a}:events")]
    assert link.moved_away(b"chat:{a}:events") is False  # the answer to ours
    assert link.moved_away(b"chat:{a}:events") is True   # one Redis sent unasked


def test_unread_bytes_counts_what_waits_on_a_socket_without_reading_it():
    ours, theirs = socket.socketpair()
    assert unread_bytes(ours) == 0
    theirs.sendall(b"+PONG\r\n")
    assert unread_bytes(ours) == 7
    assert unread_bytes(ours) == 7  # still there
    assert ours.recv(16) == b"+PONG\r\n"


class Quiet(Sent):
    """A connection whose socket the test writes to as Redis would."""

    def __init__(self):
        super().__init__()
        self._sock, self.redis = socket.socketpair()
        self.disconnected = False

    def disconnect(self):
        self.disconnected = True


class OneRedis:
    """One Redis, as a Link sees it: a client whose pool takes connections back."""

    sharded = False

    def client(self, node):
        return self

    @property
    def connection_pool(self):
        return self

    def release(self, conn):
        pass


class Hub:
    def unready(self, link):
        pass


def quiet_link():
    link = Link("127.0.0.1:6379", OneRedis(), hub=Hub(), lock=Semaphore())
    link._greenlet.kill()  # no reader: the test plays a busy process that has not read
    link._conn = conn = Quiet()
    link.heard_at = time.monotonic() - PUBSUB_SILENCE - 1
    return link, conn


def test_a_connection_silent_past_the_bound_is_replaced():
    link, conn = quiet_link()
    link.watch()
    assert conn.disconnected and link._conn is None


def test_a_reply_waiting_unread_is_not_silence_the_connection_is_kept_and_pinged():
    link, conn = quiet_link()
    conn.redis.sendall(b">3\r\n$7\r\nmessage\r\n")  # Redis spoke; the busy reader has not read it
    link.watch()
    assert not conn.disconnected and link._conn is conn
    assert conn.commands == [("PING",)]
