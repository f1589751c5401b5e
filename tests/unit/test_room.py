import json

import fakeredis
import pytest
from redis.exceptions import RedisClusterException

from chat_app.config import HISTORY_FIRST_WINDOW, HISTORY_WINDOW_GROWTH, Settings
from chat_app.events import event_id
from chat_app.room import RateLimited, Rooms, StoreUnavailable
from chat_app.store import connect
from tests.servers import free_port, wait_until

# Events a history read takes first from the tail, and with the script's first two windows.
ONE_WINDOW = HISTORY_FIRST_WINDOW
TWO_WINDOWS = HISTORY_FIRST_WINDOW * (1 + HISTORY_WINDOW_GROWTH)


class CountingRedis(fakeredis.FakeRedis):
    """A fake Redis that records each command it is sent and how many elements its reply carried."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.replies = []   # (command name, elements in its reply)

    def execute_command(self, *args, **options):
        reply = super().execute_command(*args, **options)
        self.replies.append((args[0], len(reply) if isinstance(reply, list) else 1))
        return reply


def post_joins(rooms, count, room="lobby"):
    """Posts count join events; returns their ids."""
    return [json.loads(rooms.post(room, "join", "ada"))["id"] for _ in range(count)]


def whole_archive_after(client, after, room="lobby"):
    """The archived events with id > after as a read of the whole list finds them: the reference."""
    archive = client.lrange(f"chat:{room}:archive", 0, -1)
    return [(event_id(raw), raw) for raw in archive if event_id(raw) > after]


def test_post_returns_the_event_and_archives_it(rooms):
    raw = rooms.post("lobby", "message", "ada", "hello <b>")
    event = json.loads(raw)
    assert list(event) == ["id", "type", "room", "user", "text", "ts", "prev"]
    assert event["type"] == "message" and event["text"] == "hello <b>"
    assert abs(event["ts"] - event["id"] // 1000) < 5_000  # ts in ms, id in µs of the same clock
    assert rooms.history("lobby") == [(event["id"], raw)]


def test_each_event_names_its_predecessor_as_prev(rooms, fake_redis):
    first, second, third = (json.loads(rooms.post("lobby", kind, "ada", text))
                            for kind, text in (("join", ""), ("message", "hi"), ("leave", "")))
    assert first["prev"] == 0  # a new room
    assert second["prev"] == first["id"] and third["prev"] == second["id"]
    fake_redis.flushall()  # Redis lost its data: the chain starts again, visibly
    after = json.loads(rooms.post("lobby", "message", "ada", "again"))
    assert after["prev"] == 0 and after["id"] > third["id"]


def test_ids_strictly_increase_and_history_is_oldest_first(rooms):
    ids = [json.loads(rooms.post("lobby", "message", "ada", str(i)))["id"] for i in range(30)]
    assert ids == sorted(set(ids))
    assert [eid for eid, _ in rooms.history("lobby")] == ids
    assert [eid for eid, _ in rooms.history("lobby", after=ids[9])] == ids[10:]
    assert rooms.history("lobby", after=ids[-1]) == []


def test_history_of_an_empty_archive_is_empty(rooms):
    for after in (0, 1, 10**30):
        assert rooms.history("lobby", after) == []


@pytest.mark.parametrize("posts", [1, ONE_WINDOW - 1, ONE_WINDOW, ONE_WINDOW + 1,
                                   TWO_WINDOWS, TWO_WINDOWS + 1])
def test_history_after_any_id_is_what_a_whole_read_finds(fake_redis, posts):
    rooms = Rooms(fake_redis, Settings(archive_size=TWO_WINDOWS + 1))
    ids = post_joins(rooms, posts)
    afters = {0, 1, 10**30, *ids, *(i - 1 for i in ids), *(i + 1 for i in ids)}
    for after in sorted(afters):
        assert rooms.history("lobby", after) == whole_archive_after(fake_redis, after), after


def test_history_after_a_trimmed_id_is_the_whole_archive(fake_redis):
    rooms = Rooms(fake_redis, Settings(archive_size=TWO_WINDOWS + 1))
    ids = post_joins(rooms, TWO_WINDOWS + 20)
    kept = ids[-(TWO_WINDOWS + 1):]
    for after in (1, ids[0], ids[18], kept[0] - 1):  # older than the oldest archived
        assert [eid for eid, _ in rooms.history("lobby", after)] == kept
    assert [eid for eid, _ in rooms.history("lobby", 0)] == kept
    assert rooms.history("lobby", kept[-1]) == rooms.history("lobby", kept[-1] + 1) == []


def test_history_transfers_one_window_and_what_it_returns_not_the_archive():
    client = CountingRedis(server=fakeredis.FakeServer())
    rooms = Rooms(client, Settings(archive_size=1000))
    ids = post_joins(rooms, 1000)
    rooms.history("lobby", ids[0])  # loads the script
    for received in (0, 3, ONE_WINDOW - 1, ONE_WINDOW, 40, 999):
        client.replies.clear()
        assert [eid for eid, _ in rooms.history("lobby", ids[-received - 1])] == ids[1000 - received:]
        further = [("EVALSHA", received)] if received >= ONE_WINDOW else []  # the script
        assert client.replies == [("LRANGE", ONE_WINDOW), *further]
    client.replies.clear()
    assert len(rooms.history("lobby")) == 1000  # after=0: the whole archive, in one LRANGE
    assert client.replies == [("LRANGE", 1000)]


def test_histories_read_what_history_reads_for_each_room_in_one_pipeline():
    client = CountingRedis(server=fakeredis.FakeServer())
    rooms = Rooms(client, Settings(archive_size=1000))
    ids = {room: post_joins(rooms, count, room) for room, count in
           [("lobby", 100), ("quiet", 1), ("empty", 0)]}
    wanted = [("lobby", 0), ("lobby", ids["lobby"][-4]), ("lobby", ids["lobby"][10]),
              ("quiet", ids["quiet"][0]), ("quiet", 0), ("empty", 5)]
    expected = [rooms.history(room, after) for room, after in wanted]
    client.replies.clear()
    assert rooms.histories(wanted) == expected
    assert [len(events) for events in expected] == [100, 3, 89, 0, 1, 0]
    assert client.replies == [("EVALSHA", 89)]  # the one room far behind; the windows in a pipeline


def test_archive_is_capped(fake_redis):
    rooms = Rooms(fake_redis, Settings(archive_size=5, rate_burst=100))
    ids = [json.loads(rooms.post("lobby", "message", "ada", str(i)))["id"] for i in range(12)]
    assert [eid for eid, _ in rooms.history("lobby")] == ids[-5:]


def test_rooms_are_isolated(rooms):
    rooms.post("a", "message", "ada", "in a")
    rooms.post("b", "message", "bob", "in b")
    assert [json.loads(raw)["text"] for _, raw in rooms.history("a")] == ["in a"]


def test_post_publishes_prev_id_and_event(rooms, fake_redis):
    pubsub = fake_redis.pubsub()
    pubsub.subscribe(rooms.channel("lobby"))
    pubsub.get_message(timeout=1)
    first = json.loads(rooms.post("lobby", "join", "ada"))
    raw = rooms.post("lobby", "message", "ada", "hi")
    published = [pubsub.get_message(timeout=1)["data"] for _ in range(2)]
    assert published[0] == b"0 %d " % first["id"] + json.dumps(first, separators=(",", ":")).encode()
    assert published[1] == b"%d %d " % (first["id"], json.loads(raw)["id"]) + raw


def test_rate_limit_is_per_user_and_room_and_posts_nothing(fake_redis):
    rooms = Rooms(fake_redis, Settings(rate_burst=3, rate_per_sec=0.001))
    for i in range(3):
        rooms.post("lobby", "message", "ada", str(i))
    with pytest.raises(RateLimited):
        rooms.post("lobby", "message", "ada", "one too many")
    assert len(rooms.history("lobby")) == 3
    rooms.post("lobby", "message", "bob", "bob has his own bucket")
    rooms.post("other", "message", "ada", "and each room its own")
    rooms.post("lobby", "leave", "ada")  # join and leave are not messages


def test_rate_limit_refills(fake_redis):
    rooms = Rooms(fake_redis, Settings(rate_burst=1, rate_per_sec=20))
    rooms.post("lobby", "message", "ada", "1")
    with pytest.raises(RateLimited):
        rooms.post("lobby", "message", "ada", "2")

    def refilled():
        try:
            return rooms.post("lobby", "message", "ada", "2")
        except RateLimited:
            return None

    wait_until(refilled, timeout=2, message="the bucket to refill (1 token per 50 ms)")


def test_unreachable_redis_is_store_unavailable(settings):
    rooms = Rooms(connect(f"redis://127.0.0.1:{free_port()}/0").commands, settings)
    with pytest.raises(StoreUnavailable):
        rooms.post("lobby", "message", "ada", "hi")
    with pytest.raises(StoreUnavailable):
        rooms.history("lobby")
    assert rooms.healthy() is False


def test_a_rooms_keys_and_channel_share_one_hash_tag_on_a_cluster(settings):
    single, cluster = Rooms(None, settings), Rooms(None, settings, cluster=True)
    assert [single.key("lobby", "last"), single.channel("lobby")] == [
        "chat:lobby:last", "chat:lobby:events"]  # one Redis: the names as they always were
    assert [cluster.key("lobby", "last"), cluster.key("lobby", "rate:ada"),
            cluster.channel("lobby")] == [
        "chat:{lobby}:last", "chat:{lobby}:rate:ada", "chat:{lobby}:events"]


def test_a_redis_that_forgot_the_post_script_is_sent_it_again(rooms, fake_redis):
    rooms.post("lobby", "join", "ada")
    fake_redis.script_flush()  # as a replica promoted after a failover, or a restart
    assert json.loads(rooms.post("lobby", "message", "ada", "again"))["text"] == "again"


def test_a_redis_that_does_not_answer_at_start_is_taken_for_one_redis_until_it_does():
    store = connect(f"redis://127.0.0.1:{free_port()}/0")
    assert store.cluster is False and store.nodes.verified is False


def test_a_cluster_with_no_node_answering_is_store_unavailable(settings):
    class NoNodeAnswers:  # what RedisCluster raises then is not a RedisError
        def evalsha(self, *args):
            raise RedisClusterException("Redis Cluster cannot be connected")

        lrange = evalsha

    rooms = Rooms(NoNodeAnswers(), settings, cluster=True)
    with pytest.raises(StoreUnavailable):
        rooms.post("lobby", "message", "ada", "hi")
    with pytest.raises(StoreUnavailable):
        rooms.history("lobby")


@pytest.mark.parametrize("size, back", [(0, 0), (5, 0), (5, 2), (5, 5), (5, 9), (100, 0),
                                        (100, 31), (100, 32), (100, 33), (100, 99), (100, 150)])
def test_a_join_reads_what_history_reads_then_posts_its_event(fake_redis, size, back):
    """back: how many of the newest events the joiner lacks (more than the archive: all)."""
    rooms = Rooms(fake_redis, Settings(archive_size=100, rate_burst=1000))
    ids = [json.loads(rooms.post("lobby", "message", "ada", f"m{i}"))["id"] for i in range(size)]
    after = 0 if back >= size else ids[-1 - back] if back else ids[-1] if ids else 0
    expected = rooms.history("lobby", after)
    archived = rooms.join("lobby", "bob", after, ("bob\nws:1", 1000, 60000))
    assert archived == expected
    join = json.loads(rooms.history("lobby")[-1][1])
    assert (join["type"], join["user"], join["prev"]) == ("join", "bob", ids[-1] if ids else 0)
    assert fake_redis.zscore("chat:lobby:presence", "bob\nws:1") == 1000


def test_a_leave_removes_its_presence_member_and_posts_its_event(fake_redis, rooms):
    rooms.join("lobby", "bob", 0, ("bob\nws:1", 1000, 60000))
    rooms.leave("lobby", "bob", "bob\nws:1")
    assert fake_redis.zscore("chat:lobby:presence", "bob\nws:1") is None
    leave = json.loads(rooms.history("lobby")[-1][1])
    assert (leave["type"], leave["user"]) == ("leave", "bob")
    rooms.leave("lobby", "cy")  # no member: only the event
    assert json.loads(rooms.history("lobby")[-1][1])["user"] == "cy"


class InfoReply:
    """A pub/sub connection just made, answering INFO cluster."""

    def __init__(self, info):
        self.info = info

    def send_command(self, *args):
        assert args == ("INFO", "cluster")

    def read_response(self):
        return self.info


@pytest.mark.parametrize("info, restarts", [(b"# Cluster\r\ncluster_enabled:1\r\n", True),
                                            (b"# Cluster\r\ncluster_enabled:0\r\n", False)])
def test_a_redis_found_to_be_a_cluster_only_later_restarts_the_worker(monkeypatch, info, restarts):
    import signal
    from chat_app import store
    killed = []
    monkeypatch.setattr(store.os, "kill", lambda pid, sig: killed.append(sig))
    nodes = store.Nodes(None, verified=False)
    nodes.verify(InfoReply(info))
    assert killed == ([signal.SIGTERM] if restarts else [])
    assert nodes.verified
    nodes.verify(None)  # asked once
