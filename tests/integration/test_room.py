"""The post script on a real redis-server."""

import json

import pytest
import redis

from chat_app.config import HISTORY_FIRST_WINDOW, HISTORY_WINDOW_GROWTH, Settings
from chat_app.events import event_id
from chat_app.room import RateLimited, Rooms


def lranges_run_by(client, call):
    """call()'s result, and the (start, stop) of every LRANGE Redis ran meanwhile
    (MONITOR: the history script's own included)."""
    with client.monitor() as monitor:
        result = call()
        client.echo("monitored")
        ranges = []
        while (command := monitor.next_command()["command"]) != "ECHO monitored":
            name, *args = command.split()
            if name == "LRANGE":
                ranges.append((int(args[1]), int(args[2])))
    return result, ranges


def test_ids_keep_increasing_after_redis_restarts_empty(redis_server):
    client = redis.Redis.from_url(redis_server.url)
    rooms = Rooms(client, Settings(rate_burst=1000))
    before = [json.loads(rooms.post("lobby", "message", "ada", str(i)))["id"] for i in range(200)]
    redis_server.restart()
    client.connection_pool.disconnect()
    assert rooms.history("lobby") == []  # the restart lost everything
    after = json.loads(rooms.post("lobby", "message", "ada", "after"))["id"]
    assert after > max(before)


def test_post_script_on_real_redis(redis_server):
    rooms = Rooms(redis.Redis.from_url(redis_server.url), Settings(archive_size=3, rate_burst=2))
    raws = [rooms.post("lobby", "message", "ada", f"m{i}") for i in range(2)]
    with pytest.raises(RateLimited):
        rooms.post("lobby", "message", "ada", "refused")
    events = [json.loads(r) for r in raws]
    assert events[1]["id"] > events[0]["id"] > 10**15  # µs ids, printed as integers
    assert rooms.history("lobby") == [(e["id"], r) for e, r in zip(events, raws)]


def test_history_reads_the_archive_only_as_far_back_as_it_returns(redis_server):
    client = redis.Redis.from_url(redis_server.url)
    size = 10_000
    rooms = Rooms(client, Settings(archive_size=size))
    ids = [json.loads(rooms.post("lobby", "join", "ada"))["id"] for _ in range(size + 50)][-size:]
    for received in (0, 3, 40, 1000, size):
        after = ids[-received - 1] if received < size else ids[0] - 1
        events, ranges = lranges_run_by(client, lambda: rooms.history("lobby", after))
        assert [eid for eid, _ in events] == ids[size - received:]
        assert ranges and all(start < 0 and stop < 0 for start, stop in ranges)  # from the tail
        read = sum(stop - start + 1 for start, stop in ranges)
        assert read <= 2 * HISTORY_FIRST_WINDOW + HISTORY_WINDOW_GROWTH * received, (received, ranges)


def test_history_on_real_redis_is_what_a_whole_read_finds(redis_server):
    client = redis.Redis.from_url(redis_server.url)
    rooms = Rooms(client, Settings(archive_size=300))
    ids = [json.loads(rooms.post("lobby", "join", "ada"))["id"] for _ in range(320)]
    archive = client.lrange("chat:lobby:archive", 0, -1)
    for after in (0, 1, ids[0], ids[19], ids[20], ids[21], ids[200], ids[-2], ids[-1],
                  ids[-1] + 1, 2**53 + 1, 10**30):
        expected = [(event_id(raw), raw) for raw in archive if event_id(raw) > after]
        assert rooms.history("lobby", after) == expected, after
