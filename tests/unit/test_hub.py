"""The hub with fakeredis: subscriptions, batches, backfill, catch-up, shutdown.

Listeners here are fakes that record the batches handed to them; the
sequencing itself is tested without the hub in test_sequence.py.
"""

import json
import socket

import gevent
import pytest

from chat_app import hub as hub_module
from chat_app.config import PING_SLICES, Settings
from chat_app.control import Control
from chat_app.exceptions import ShuttingDown, StoreUnavailable
from chat_app.hub import Hub, Subscription
from chat_app.store import Nodes
from chat_app.sequence import CatchUp
from chat_app.longpoll import LongPoll
from tests.servers import wait_until


class FakeListener:
    """Records the batches the hub hands it, as a WebSocket client would get them."""

    transport = "websocket"
    user = None

    def __init__(self, room="lobby"):
        self.room = room
        self.batches = []
        self.closed = None
        self.pings = 0

    def deliver(self, batch):
        self.batches.append(batch)
        return len(batch)

    def close(self, code, reason=""):
        self.closed = code

    def ping(self):
        self.pings += 1

    def events(self):
        return [json.loads(raw) for batch in self.batches for _, raw in batch.events]


def post(rooms, text, room="lobby", user="ada"):
    return json.loads(rooms.post(room, "message", user, text))["id"]


def texts(listener):
    return [e["text"] for e in listener.events()]


def poll_body(poll):
    return json.loads(poll.response().get_data())


def test_attach_replays_the_archive_after_last_received_then_streams(hub, rooms):
    ids = [post(rooms, f"old{i}") for i in range(3)]
    listener = FakeListener()
    hub.attach(listener, after=ids[0])
    assert texts(listener) == ["old1", "old2"]
    assert listener.batches[0].replay
    post(rooms, "new")
    wait_until(lambda: len(listener.events()) == 3)
    assert texts(listener) == ["old1", "old2", "new"]
    assert not listener.batches[-1].replay


def test_every_listener_gets_the_same_batch(hub, rooms):
    listeners = [FakeListener() for _ in range(3)]
    for listener in listeners:
        hub.attach(listener, after=0)
    post(rooms, "hello")
    wait_until(lambda: all(listener.batches for listener in listeners))
    first = listeners[0].batches[0]
    assert all(listener.batches[0] is first for listener in listeners)  # encoded once, shared


def test_a_message_sooner_than_the_interval_waits_for_the_next_fan_out(rooms, fake_redis):
    settings = Settings(fanout_interval=0.5)
    hub = Hub(rooms, Nodes(fake_redis), settings, Control(fake_redis, settings))
    listener = FakeListener()
    hub.attach(listener, after=0)
    post(rooms, "alone")
    wait_until(lambda: len(listener.batches) == 1, message="the first message")
    post(rooms, "second")
    post(rooms, "third")
    wait_until(lambda: len(listener.batches) == 2, timeout=2)
    assert len(listener.batches[1]) == 2  # both waited for the interval, then went as one batch
    assert texts(listener) == ["alone", "second", "third"]
    hub.stop()


def test_rooms_are_isolated(hub, rooms):
    a, b = FakeListener("a"), FakeListener("b")
    hub.attach(a, 0)
    hub.attach(b, 0)
    post(rooms, "for a", room="a")
    post(rooms, "for b", room="b")
    wait_until(lambda: a.batches and b.batches)
    gevent.sleep(0.05)
    assert texts(a) == ["for a"] and texts(b) == ["for b"]


def archive_without_publishing(fake_redis, room, eid, text):
    """An event that reached the archive but whose publication was lost."""
    raw = ('{"id":%d,"type":"message","room":"%s","user":"ghost","text":"%s","ts":1}'
           % (eid, room, text)).encode()
    fake_redis.set(f"chat:{room}:last", eid)
    fake_redis.rpush(f"chat:{room}:archive", raw)


def test_a_missed_publication_is_backfilled_from_the_archive(hub, rooms, fake_redis):
    listener = FakeListener()
    hub.attach(listener, 0)
    first = post(rooms, "first")
    wait_until(lambda: len(listener.events()) == 1)
    archive_without_publishing(fake_redis, "lobby", first + 1, "missed")
    post(rooms, "third")  # published with prev = the missed id
    wait_until(lambda: len(listener.events()) == 3)
    assert texts(listener) == ["first", "missed", "third"]


def test_a_failed_backfill_reconnects_and_backfills_again(hub, rooms, fake_redis, monkeypatch):
    listener = FakeListener()
    hub.attach(listener, 0)
    first = post(rooms, "first")
    wait_until(lambda: len(listener.events()) == 1)
    history = rooms.history
    failures = []

    def history_failing_once(room, after=0):
        if not failures:
            failures.append(room)
            raise StoreUnavailable("redis went away")
        return history(room, after)

    monkeypatch.setattr(rooms, "history", history_failing_once)
    archive_without_publishing(fake_redis, "lobby", first + 1, "missed")
    post(rooms, "third")  # its prev id shows the gap; the backfill fails once
    wait_until(lambda: len(listener.events()) == 3, message="backfill after resubscribing")
    post(rooms, "fourth")
    wait_until(lambda: len(listener.events()) == 4)
    assert failures == ["lobby"]
    assert texts(listener) == ["first", "missed", "third", "fourth"]


def test_a_reconnected_link_backfills_all_its_rooms_in_one_read(hub, rooms, fake_redis, monkeypatch):
    names = [f"room{i}" for i in range(20)]
    listeners = [FakeListener(name) for name in names]
    for listener in listeners:
        hub.attach(listener, 0)
    firsts = [post(rooms, "first", room=name) for name in names]
    wait_until(lambda: all(len(listener.events()) == 1 for listener in listeners))
    for name, first in zip(names, firsts):
        archive_without_publishing(fake_redis, name, first + 1, "missed")
    history, histories, reads = rooms.history, rooms.histories, []

    def history_with_a_bug_once(room, after=0):
        raise RuntimeError("a bug")  # the gap below: the reader starts again

    def counted_histories(wanted):
        reads.append(sorted(room for room, _ in wanted))
        return histories(wanted)

    monkeypatch.setattr(rooms, "history", history_with_a_bug_once)
    monkeypatch.setattr(rooms, "histories", counted_histories)
    post(rooms, "third", room=names[0])  # its prev id shows the gap
    wait_until(lambda: all(len(listener.events()) >= 2 for listener in listeners),
               message="every room backfilled after reconnecting")
    monkeypatch.setattr(rooms, "history", history)
    assert reads == [sorted(names)]  # one read for every room the reconnect resubscribed
    assert texts(listeners[0]) == ["first", "missed", "third"]
    assert all(texts(listener) == ["first", "missed"] for listener in listeners[1:])


def test_a_listener_joining_while_events_flow_gets_each_once_in_order(hub, rooms, monkeypatch):
    post(rooms, "archived")
    early = FakeListener()
    hub.attach(early, 0)  # the hub knows the room: a late joiner reads the archive
    history = rooms.history

    def history_while_posts_arrive(room, after=0):
        archived = history(room, after)
        post(rooms, "during 1")
        post(rooms, "during 2")
        wait_until(lambda: len(early.events()) == 3, message="the hub to deliver them")
        return archived

    monkeypatch.setattr(rooms, "history", history_while_posts_arrive)
    late = FakeListener()
    hub.attach(late, 0)
    monkeypatch.setattr(rooms, "history", history)
    post(rooms, "after")
    wait_until(lambda: len(late.events()) == 4)
    assert texts(late) == ["archived", "during 1", "during 2", "after"]
    assert len(late.batches) == 2  # the replay (archive and what came meanwhile), then live


def test_long_poll_answers_at_once_from_the_archive(hub, rooms):
    ids = [post(rooms, str(i)) for i in range(3)]
    poll = LongPoll("lobby", {})
    hub.attach(poll, after=ids[0])
    assert [e["id"] for e in poll_body(poll)] == ids[1:]


def test_events_delivered_while_a_long_poll_reads_the_archive_join_its_one_answer(
        hub, rooms, monkeypatch):
    post(rooms, "archived")
    listener = FakeListener()
    hub.attach(listener, 0)  # the hub knows the room's newest id: polls read the archive
    wait_until(lambda: len(listener.events()) == 1)
    history = rooms.history

    def history_while_a_post_arrives(room, after=0):
        archived = history(room, after)
        post(rooms, "new")
        wait_until(lambda: len(listener.events()) == 2, message="the hub to deliver it")
        return archived

    monkeypatch.setattr(rooms, "history", history_while_a_post_arrives)
    server_end, client_end = socket.socketpair()
    poll = LongPoll("lobby", {"SERVER_PROTOCOL": "HTTP/1.1", "gunicorn.socket": server_end})
    hub.attach(poll, after=0)
    poll.response()
    client_end.setblocking(False)
    answer = client_end.recv(65536)
    body = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    assert [e["text"] for e in body] == ["archived", "new"]
    with pytest.raises(BlockingIOError):  # one answer, nothing after it
        client_end.recv(1)
    server_end.close()
    client_end.close()


def test_long_poll_waits_for_the_next_events(hub, rooms):
    last = post(rooms, "seen")
    polls = [LongPoll("lobby", {}) for _ in range(3)]
    for poll in polls:
        hub.attach(poll, last)
    waiting = [gevent.spawn(poll.wait, 5) for poll in polls]
    gevent.sleep(0.05)
    assert not any(w.ready() for w in waiting)
    new = post(rooms, "new")
    gevent.joinall(waiting, timeout=5, raise_error=True)
    bodies = [poll.response().response[0] for poll in polls]
    assert [e["id"] for e in json.loads(bodies[0])] == [new]
    assert bodies[1] is bodies[0] and bodies[2] is bodies[0]  # one body per batch, shared


def test_long_poll_times_out_with_an_empty_array(hub, rooms):
    last = post(rooms, "seen")
    poll = LongPoll("lobby", {})
    hub.attach(poll, last)
    poll.wait(0.1)
    assert poll_body(poll) == []


def test_last_listener_leaving_unsubscribes(hub, rooms, fake_redis):
    listener = FakeListener()
    hub.attach(listener, 0)
    channel = rooms.channel("lobby")
    assert fake_redis.pubsub_numsub(channel) == [(channel.encode(), 1)]
    hub.detach(listener)
    assert list(hub.listeners()) == []
    wait_until(lambda: fake_redis.pubsub_numsub(channel) == [(channel.encode(), 0)])
    post(rooms, "nobody listens")
    gevent.sleep(0.05)
    assert listener.events() == []


def test_shutdown_closes_sockets_with_1012_and_answers_polls(hub, rooms):
    listener = FakeListener()
    hub.attach(listener, 0)
    last = post(rooms, "x")
    poll = LongPoll("lobby", {})
    hub.attach(poll, last + 10**9)
    waiting = gevent.spawn(poll.wait, 30)
    gevent.sleep(0.05)
    hub.shutdown()
    assert listener.closed == 1012
    waiting.get(timeout=2)
    assert poll_body(poll) == []
    with pytest.raises(ShuttingDown):
        hub.attach(FakeListener(), 0)
    with pytest.raises(ShuttingDown):
        hub.attach(LongPoll("lobby", {}), 0)


def test_listeners_are_pinged_every_interval(rooms, fake_redis):
    settings = Settings(ping_interval=0.05)
    hub = Hub(rooms, Nodes(fake_redis), settings, Control(fake_redis, settings))
    listener = FakeListener()
    hub.attach(listener, 0)
    wait_until(lambda: listener.pings >= 2, timeout=2)
    hub.stop()


def test_a_ping_tick_lets_other_greenlets_run_between_its_slices(
        rooms, fake_redis, settings, monkeypatch):
    monkeypatch.setattr(hub_module, "PING_SLICES", 1)  # every listener in the one tick
    hub = Hub(rooms, Nodes(fake_redis), settings, Control(fake_redis, settings))
    pinged = []

    class Counted(FakeListener):
        def ping(self):
            pinged.append(self)

    for _ in range(1000):
        hub.attach(Counted(), 0)
    seen_by_another = []
    gevent.spawn(lambda: seen_by_another.append(len(pinged)))
    hub._ping_listeners()
    assert len(pinged) == 1000
    assert seen_by_another and seen_by_another[0] < 1000  # it ran mid-tick, not after
    hub.stop()


def test_a_ping_round_is_spread_over_its_ticks_and_skips_detached_listeners(
        rooms, fake_redis, settings):
    hub = Hub(rooms, Nodes(fake_redis), settings, Control(fake_redis, settings))
    pinged = []

    class Counted(FakeListener):
        def ping(self):
            pinged.append(self)

    listeners = [Counted() for _ in range(PING_SLICES * 4)]
    for listener in listeners:
        hub.attach(listener, 0)
    hub.detach(listeners[0])
    per_tick = []
    for _ in range(PING_SLICES):
        before = len(pinged)
        hub._ping_listeners()
        per_tick.append(len(pinged) - before)
    assert sorted(pinged, key=id) == sorted(listeners[1:], key=id)  # each once, all but one
    assert max(per_tick) == 4
    hub.stop()


def test_delivered_events_are_counted_once_per_batch_by_transport(hub, rooms):
    from chat_app.metrics import FRAMES_DELIVERED

    def delivered():
        return FRAMES_DELIVERED.labels("websocket")._value.get()

    before = delivered()
    listeners = [FakeListener() for _ in range(3)]
    for listener in listeners:
        hub.attach(listener, 0)
    post(rooms, "counted")
    wait_until(lambda: all(listener.batches for listener in listeners))
    assert delivered() - before == 3


# --- a supervised hub: nothing one bad message or listener does stops a room ---

def hub_errors():
    from chat_app.metrics import HUB_ERRORS
    return HUB_ERRORS._value.get()


def test_a_malformed_message_on_a_room_channel_is_skipped(hub, rooms, fake_redis):
    listener = FakeListener()
    hub.attach(listener, 0)
    errors = hub_errors()
    fake_redis.publish(rooms.channel("lobby"), b"not a post")  # what redis-cli PUBLISH might send
    post(rooms, "after it")
    wait_until(lambda: texts(listener) == ["after it"])
    assert hub_errors() == errors + 1


class FailingListener(FakeListener):
    def deliver(self, batch):
        raise RuntimeError("a bug in a listener")


def test_a_failing_listener_is_closed_and_the_others_still_get_the_batch(hub, rooms):
    failing, healthy = FailingListener(), FakeListener()
    hub.attach(failing, 0)
    hub.attach(healthy, 0)
    post(rooms, "for everyone")
    wait_until(lambda: texts(healthy) == ["for everyone"])
    assert failing.closed == 1011
    post(rooms, "the room goes on")
    wait_until(lambda: texts(healthy) == ["for everyone", "the room goes on"])


def test_an_unexpected_error_in_the_reader_reconnects_and_backfills(
        hub, rooms, fake_redis, monkeypatch):
    listener = FakeListener()
    hub.attach(listener, 0)
    first = post(rooms, "first")
    wait_until(lambda: len(listener.events()) == 1)
    history, failures = rooms.history, []

    def history_with_a_bug_once(room, after=0):
        if not failures:
            failures.append(room)
            raise RuntimeError("a bug")
        return history(room, after)

    monkeypatch.setattr(rooms, "history", history_with_a_bug_once)
    errors = hub_errors()
    archive_without_publishing(fake_redis, "lobby", first + 1, "missed")
    post(rooms, "third")  # the gap's backfill fails with the bug: the reader starts again
    wait_until(lambda: len(listener.events()) == 3, message="backfill after reconnecting")
    assert texts(listener) == ["first", "missed", "third"]
    assert hub_errors() == errors + 1


# --- the control channel: requests to every process ---

class UserListener(FakeListener):
    def __init__(self, room, user, transport="websocket"):
        super().__init__(room)
        self.user = user
        self.transport = transport


def test_a_disconnect_closes_the_users_sockets_and_streams_in_every_process(
        rooms, fake_redis, settings):
    control = Control(fake_redis, settings)
    hubs = [Hub(rooms, Nodes(fake_redis), settings, control) for _ in range(2)]  # two processes
    ada = [UserListener("lobby", "ada"), UserListener("lobby", "ada", "sse")]
    others = [UserListener("lobby", "bob"), UserListener("other", "ada")]
    for hub, listener in zip([hubs[0], hubs[1], hubs[0], hubs[1]], ada + others):
        hub.attach(listener, 0)
    wait_until(lambda: all(hub.up(0) for hub in hubs))
    assert control.disconnect("lobby", "ada") == 2
    assert [listener.closed for listener in ada] == [1008, 1008]
    assert [listener.closed for listener in others] == [None, None]
    assert control.disconnect("lobby", "nobody") == 0
    for hub in hubs:
        hub.stop()


@pytest.mark.parametrize("last_id, marks, expected", [
    (9, [3, 5], 9),           # what this process delivered last
    (None, [5, 3], 3),        # nothing delivered yet: the oldest a listener has
    (None, [], None),         # no listener has read the archive: nothing to backfill
    (None, [None], None),     # one still reading: its own read will include it
])
def test_a_resubscribed_room_backfills_from_what_its_listeners_may_lack(last_id, marks, expected):
    sub = Subscription("lobby", "chat:lobby:events")
    sub.sequence.last_id = last_id
    for mark in marks:
        catch_up = CatchUp(mark or 0)
        if mark is not None:
            catch_up.archived([])
        sub.joining[object()] = catch_up
    assert sub.backfill_from() == expected
