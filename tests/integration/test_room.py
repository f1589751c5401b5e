"""The post script on a real redis-server."""

import json

import pytest
import redis

from chat_app.config import Settings
from chat_app.room import RateLimited, Rooms


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
