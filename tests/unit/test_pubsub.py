"""The pub/sub connection's replies: batches, sorting, confirmations (no Redis)."""

import socket
import time

import gevent
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
    batches = read_batches(BufferedConnection(replies), interval=0, heard=lambda: None)
    assert next(batches) == replies
    with pytest.raises(ConnectionError):
        next(batches)


class SocketConnection(BufferedConnection):
    """A connection whose replies are a byte each in a real socket, and whose
    can_read polls through gevent, a turn of the event loop (as redis-py's does)."""

    def __init__(self, replies):
        super().__init__(replies)
        self._sock, self.redis = socket.socketpair()
        self.redis.sendall(b"x" * len(self.replies))
        self.polls = 0
        self.heard = 0

    def can_read(self, timeout=0):
        self.polls += 1
        self.heard_before_poll = self.heard
        gevent.sleep(0)
        return False

    def heard_now(self):
        self.heard += 1

    def read_response(self, disconnect_on_error=True, push_request=False):
        self._sock.recv(1)
        return super().read_response()


def test_a_batch_waiting_in_the_socket_is_read_with_one_turn_of_the_loop_at_its_end():
    replies = [[b"message", b"chat:lobby:events", b"%d %d {}" % (i - 1, i)] for i in range(1, 6)]
    conn = SocketConnection(replies)
    assert next(read_batches(conn, interval=0, heard=conn.heard_now)) == replies
    assert conn.polls == 1  # not one a reply: a busy loop would hold each one up
    # Redis was heard, each reply, before that turn, in which the watchdog may run.
    assert conn.heard_before_poll == len(replies)


class TrickleConnection(SocketConnection):
    """A connection to which Redis sends one more reply during each turn of
    the loop that can_read takes, as to a process whose every turn is long."""

    def __init__(self, replies):
        super().__init__(replies)
        self.total = len(self.replies)
        self._sock.recv(self.total - 1)  # one reply waits; the rest trickle in
        self.heard_at_polls = []  # (replies read, heard) at each poll

    def can_read(self, timeout=0):
        self.heard_at_polls.append((self.read, self.heard))
        gevent.sleep(0)
        if len(self.replies) > 1:
            self.redis.sendall(b"x")
            return True
        return False

    @property
    def read(self):
        return self.total - len(self.replies)


def test_each_reply_of_a_batch_that_spans_turns_of_the_loop_is_heard():
    replies = [[b"message", b"chat:lobby:events", b"%d %d {}" % (i - 1, i)] for i in range(1, 6)]
    conn = TrickleConnection(replies)
    assert next(read_batches(conn, interval=0, heard=conn.heard_now)) == replies[:4]
    # the watchdog, which may run in any of those turns, has heard every reply read
    assert conn.heard_at_polls == [(1, 1), (2, 2), (3, 3), (4, 4)]


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
    link.heard_at = time.monotonic() - PUBSUB_SILENCE - 2
    link.asked_at = link.heard_at + 1  # a PING unanswered for longer than the bound
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


def test_a_process_held_up_past_the_bound_asks_again_before_it_judges():
    link, conn = quiet_link()
    link.asked_at = link.heard_at  # its last PING was answered; then it stalled, asking nothing
    link.watch()
    assert not conn.disconnected and conn.commands == [("PING",)]
    link.watch()  # a second later, within the bound: still waiting for the answer
    assert not conn.disconnected and conn.commands == [("PING",), ("PING",)]
    link.asked_at -= PUBSUB_SILENCE + 1  # that PING unanswered past the bound: silence
    link.watch()
    assert conn.disconnected and link._conn is None


def test_a_reader_handing_out_a_batch_is_not_silence_the_connection_is_kept_and_pinged():
    link, conn = quiet_link()
    link.dispatching = True  # its batch's replies were read; the rest wait in redis-py's buffer
    link.watch()
    assert not conn.disconnected and conn.commands == [("PING",)]
    link.dispatching = False  # handed out, and still no answer: silence
    link.watch()
    assert conn.disconnected and link._conn is None
