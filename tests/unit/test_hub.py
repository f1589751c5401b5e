import json

import gevent
import pytest

from chat_app.config import Settings
from chat_app.hub import Hub, ShuttingDown, Subscription
from chat_app.room import StoreUnavailable
from tests.servers import wait_until


class FakeClient:
    """Records what the hub writes to it, as a WebSocket client would receive it."""

    def __init__(self, room="lobby"):
        self.room = room
        self.sends = []      # (data, events) as given to send
        self.closed = None
        self.pings = 0

    def send(self, data, events=1):
        self.sends.append((data, events))

    def close(self, code, reason=""):
        self.closed = code

    def ping(self):
        self.pings += 1

    def events(self):
        return [e for data, _ in self.sends for e in decode_frames(data)]


def decode_frames(data):
    """Server-to-client text frames back into events."""
    events, i = [], 0
    while i < len(data):
        assert data[i] == 0x81
        size, i = data[i + 1], i + 2
        if size == 126:
            size, i = int.from_bytes(data[i:i + 2], "big"), i + 2
        elif size == 127:
            size, i = int.from_bytes(data[i:i + 8], "big"), i + 8
        events.append(json.loads(data[i:i + size]))
        i += size
    return events


def post(rooms, text, room="lobby", user="ada"):
    return json.loads(rooms.post(room, "message", user, text))["id"]


def texts(client):
    return [e["text"] for e in client.events()]


def test_attach_replays_the_archive_after_last_received_then_streams(hub, rooms):
    ids = [post(rooms, f"old{i}") for i in range(3)]
    client = FakeClient()
    hub.attach(client, after=ids[0])
    assert texts(client) == ["old1", "old2"]
    post(rooms, "new")
    wait_until(lambda: len(client.events()) == 3)
    assert texts(client) == ["old1", "old2", "new"]


def test_every_client_gets_the_same_frame_bytes(hub, rooms):
    clients = [FakeClient() for _ in range(3)]
    for client in clients:
        hub.attach(client, after=0)
    post(rooms, "hello")
    wait_until(lambda: all(c.sends for c in clients))
    first = clients[0].sends[0][0]
    assert all(c.sends[0][0] is first for c in clients)  # framed once, shared


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


def fed_by_the_test(hub, rooms):
    """A client of the hub that got "live"; from then on the test feeds the
    hub's reader itself, with what the returned subscriber sees."""
    client = FakeClient()
    hub.attach(client, after=0)
    post(rooms, "live")
    wait_until(lambda: client.sends)
    gevent.killall(hub._greenlets)
    pubsub = hub._client.pubsub()
    pubsub.subscribe(rooms.channel("lobby"))
    pubsub.get_message(timeout=1)
    return client, pubsub


def next_reply(pubsub):
    """The subscriber's next message, as the hub's connection reads it."""
    message = pubsub.get_message(timeout=1)
    return [b"message", message["channel"], message["data"]]


def test_messages_already_buffered_go_out_as_one_write(hub, rooms):
    client, pubsub = fed_by_the_test(hub, rooms)
    published = []
    for i in range(5):
        post(rooms, str(i))
        published.append(next_reply(pubsub))
    with pytest.raises(ConnectionError):
        hub._read(BufferedConnection(published))
    assert client.sends[1:] == [(client.sends[1][0], 5)]
    assert texts(client) == ["live", "0", "1", "2", "3", "4"]


def test_other_pushes_on_the_connection_are_ignored(hub, rooms):
    client, pubsub = fed_by_the_test(hub, rooms)
    post(rooms, "after the pushes")
    replies = [None, [b"pong", b""], [b"invalidate", [b"k"]], next_reply(pubsub)]
    with pytest.raises(ConnectionError):
        hub._read(BufferedConnection(replies))
    assert texts(client) == ["live", "after the pushes"]


def test_a_message_sooner_than_the_interval_waits_for_the_next_fan_out(rooms, fake_redis):
    settings = Settings(fanout_interval=0.5)
    hub = Hub(rooms, fake_redis, settings)
    client = FakeClient()
    hub.attach(client, after=0)
    post(rooms, "alone")
    wait_until(lambda: len(client.sends) == 1, message="the first message")
    post(rooms, "second")
    post(rooms, "third")
    wait_until(lambda: len(client.sends) == 2, timeout=2)
    assert client.sends[1][1] == 2  # both waited for the interval, then went as one write
    assert texts(client) == ["alone", "second", "third"]
    hub.stop()


def test_rooms_are_isolated(hub, rooms):
    a, b = FakeClient("a"), FakeClient("b")
    hub.attach(a, 0)
    hub.attach(b, 0)
    post(rooms, "for a", room="a")
    post(rooms, "for b", room="b")
    wait_until(lambda: a.sends and b.sends)
    gevent.sleep(0.05)
    assert texts(a) == ["for a"] and texts(b) == ["for b"]


def archive_without_publishing(fake_redis, rooms, room, eid, text):
    """An event that reached the archive but whose publication was lost."""
    raw = ('{"id":%d,"type":"message","room":"%s","user":"ghost","text":"%s","ts":1}'
           % (eid, room, text)).encode()
    fake_redis.set(f"chat:{room}:last", eid)
    fake_redis.rpush(f"chat:{room}:archive", raw)


def test_a_missed_publication_is_backfilled_from_the_archive(hub, rooms, fake_redis):
    client = FakeClient()
    hub.attach(client, 0)
    first = post(rooms, "first")
    wait_until(lambda: len(client.events()) == 1)
    archive_without_publishing(fake_redis, rooms, "lobby", first + 1, "missed")
    post(rooms, "third")  # published with prev = the missed id
    wait_until(lambda: len(client.events()) == 3)
    assert texts(client) == ["first", "missed", "third"]


def test_a_failed_backfill_reconnects_and_backfills_again(hub, rooms, fake_redis, monkeypatch):
    client = FakeClient()
    hub.attach(client, 0)
    first = post(rooms, "first")
    wait_until(lambda: len(client.events()) == 1)
    history = rooms.history
    failures = []

    def history_failing_once(room, after=0):
        if not failures:
            failures.append(room)
            raise StoreUnavailable("redis went away")
        return history(room, after)

    monkeypatch.setattr(rooms, "history", history_failing_once)
    archive_without_publishing(fake_redis, rooms, "lobby", first + 1, "missed")
    post(rooms, "third")  # its prev id shows the gap; the backfill fails once
    wait_until(lambda: len(client.events()) == 3, message="backfill after resubscribing")
    post(rooms, "fourth")
    wait_until(lambda: len(client.events()) == 4)
    assert failures == ["lobby"]
    assert texts(client) == ["first", "missed", "third", "fourth"]


def test_a_client_ahead_of_the_hub_gets_no_duplicates():
    sub = Subscription("lobby", "chat:lobby:events")
    hub = Hub(rooms=None, pubsub_client=None, settings=Settings())
    behind = FakeClient()
    sub.last_id = 10
    sub.joining[behind] = joiner = type("J", (), {"mark": 12, "queue": None})()
    published = [b"%d %d {\"id\":%d,\"text\":\"%d\"}" % (i - 1, i, i, i) for i in (11, 12, 13)]
    hub._receive(sub, published)
    assert [e["id"] for e in behind.events()] == [13]
    assert behind in sub.clients and not sub.joining and joiner.mark == 13


def test_long_poll_answers_at_once_from_the_archive(hub, rooms):
    ids = [post(rooms, str(i)) for i in range(3)]
    body = hub.wait("lobby", after=ids[0], timeout=5)
    assert [e["id"] for e in json.loads(body)] == ids[1:]


def test_events_delivered_while_a_long_poll_reads_the_archive_join_its_one_answer(
        hub, rooms, monkeypatch):
    import socket as socketlib
    post(rooms, "archived")
    listener = FakeClient()
    hub.attach(listener, 0)  # the hub knows the room's newest id: polls read the archive
    wait_until(lambda: len(listener.events()) == 1)
    history = rooms.history

    def history_while_a_post_arrives(room, after=0):
        archived = history(room, after)
        post(rooms, "new")
        wait_until(lambda: len(listener.events()) == 2, message="the hub to deliver it")
        return archived

    monkeypatch.setattr(rooms, "history", history_while_a_post_arrives)
    server_end, client_end = socketlib.socketpair()
    body = hub.wait("lobby", after=0, timeout=5, fd=server_end.fileno())
    assert [e["text"] for e in json.loads(body)] == ["archived", "new"]
    client_end.setblocking(False)
    with pytest.raises(BlockingIOError):  # the hub wrote no answer of its own
        client_end.recv(1)
    server_end.close()
    client_end.close()


def test_long_poll_waits_for_the_next_events(hub, rooms):
    last = post(rooms, "seen")
    waiters = [gevent.spawn(hub.wait, "lobby", last, 5) for _ in range(3)]
    gevent.sleep(0.05)
    assert not any(w.ready() for w in waiters)
    new = post(rooms, "new")
    bodies = [w.get(timeout=5) for w in waiters]
    assert [e["id"] for e in json.loads(bodies[0])] == [new]
    assert bodies[1] is bodies[0] and bodies[2] is bodies[0]  # one body per lastReceived


def test_long_poll_times_out_with_an_empty_array(hub, rooms):
    last = post(rooms, "seen")
    assert hub.wait("lobby", last, timeout=0.1) == b"[]"


def test_last_listener_leaving_unsubscribes(hub, rooms):
    client = FakeClient()
    hub.attach(client, 0)
    assert "lobby" in hub._subs
    hub.detach(client)
    assert hub._subs == {} and hub._by_channel == {}
    post(rooms, "nobody listens")
    gevent.sleep(0.05)
    assert client.events() == []


def test_shutdown_closes_sockets_with_1012_and_answers_polls(hub, rooms):
    client = FakeClient()
    hub.attach(client, 0)
    last = post(rooms, "x")
    waiter = gevent.spawn(hub.wait, "lobby", last + 10**9, 30)
    gevent.sleep(0.05)
    hub.shutdown()
    assert client.closed == 1012
    assert waiter.get(timeout=2) == b"[]"
    with pytest.raises(ShuttingDown):
        hub.attach(FakeClient(), 0)
    assert hub.wait("lobby", 0, 30) == b"[]"


def test_clients_are_pinged_every_interval(rooms, fake_redis):
    hub = Hub(rooms, fake_redis, Settings(ping_interval=0.05))
    client = FakeClient()
    hub.attach(client, 0)
    wait_until(lambda: client.pings >= 2, timeout=2)
    hub.stop()


def test_a_long_poll_answer_the_socket_cannot_take_whole_is_finished_by_its_request():
    import socket as socketlib

    from chat_app.hub import Answered, Waiter, http_answer
    server_end, client_end = socketlib.socketpair()
    for end in (server_end, client_end):
        end.setsockopt(socketlib.SOL_SOCKET, socketlib.SO_SNDBUF, 4096)
        end.setsockopt(socketlib.SOL_SOCKET, socketlib.SO_RCVBUF, 4096)
    sub = Subscription("lobby", "chat:lobby:events")
    hub = Hub(rooms=None, pubsub_client=None, settings=Settings())
    waiter = Waiter(after=0, fd=server_end.fileno(), keep_alive=True)
    waiter.queue = None  # done with the archive: the hub answers it
    sub.waiters.add(waiter)
    events = [(i, b'{"id":%d,"text":"%s"}' % (i, b"x" * 1000)) for i in range(1, 101)]
    hub._answer(sub, events)
    answer = waiter.result.get(timeout=1)
    assert isinstance(answer, Answered) and 0 < len(answer.rest) < 100 * 1000
    expected = http_answer(b"[" + b",".join(raw for _, raw in events) + b"]", keep_alive=True)
    finishing = gevent.spawn(server_end.sendall, answer.rest)  # what the request's greenlet does
    received = b""
    while len(received) < len(expected):
        received += client_end.recv(65536)
    finishing.get(timeout=5)
    assert received == expected and not sub.waiters
    server_end.close()
    client_end.close()
