"""The hub's pub/sub connection against a real redis-server, through a proxy
(tests/proxy.py) that decides when Redis carries out each SUBSCRIBE and
UNSUBSCRIBE of a room."""

import time

import redis
import requests
import websocket

from chat_app.config import SUBSCRIBE_TIMEOUT
from tests.servers import Socket, assert_chained, wait_until


def test_a_room_left_and_entered_again_goes_live_only_when_its_last_subscribe_takes_effect(
        redis_server, redis_proxy, start_server, room_name):
    """SUBSCRIBE, UNSUBSCRIBE, SUBSCRIBE of one room in flight together: the
    first confirmation does not make the newcomer live (Redis is about to drop
    the room), so no event posted before its own SUBSCRIBE took effect is
    lost to it, even one the archive no longer holds."""
    server = start_server(redis_proxy.url, CHAT_ARCHIVE_SIZE=2)
    wait_until(lambda: requests.get(server.url + "/healthz", timeout=5).status_code == 200)
    channel = f"chat:{room_name}:events".encode()
    subscribed = subscriber_count(redis_server, channel)
    late = enter_left_and_enter_again(server, redis_proxy, room_name, channel)

    redis_proxy.release()  # the first SUBSCRIBE, confirmed; the room is still to be dropped
    wait_until(lambda: subscribed() == 1)
    early = events_within(late, 1.0)  # what late gets while its own SUBSCRIBE waits
    redis_proxy.release()  # UNSUBSCRIBE: nothing posted now reaches this process
    wait_until(lambda: subscribed() == 0)
    unheard = [server.post(room_name, f"unheard {i}") for i in range(3)]  # one more than archived
    redis_proxy.release()  # late's own SUBSCRIBE
    got = early + late.recv_until(lambda e: e["id"] == unheard[-1]["id"])
    assert_chained(got)
    assert early == []  # not live before its own subscription took effect
    assert got == unheard[-2:]  # the archive, replayed
    got += late.recv_until(lambda e: e["type"] == "join")
    heard = server.post(room_name, "heard")
    got += late.recv_until(lambda e: e["id"] == heard["id"])
    assert_chained(got)
    assert [(e["type"], e["text"]) for e in got] == [
        ("message", "unheard 1"), ("message", "unheard 2"), ("join", ""), ("message", "heard")]
    late.close()


def enter_left_and_enter_again(server, redis_proxy, room_name, channel):
    """A WebSocket that gave up on its room's SUBSCRIBE (so left it), then
    another, its newcomer: SUBSCRIBE, UNSUBSCRIBE, SUBSCRIBE held in the proxy."""
    redis_proxy.hold(lambda command: command[0].upper() in (b"SUBSCRIBE", b"UNSUBSCRIBE")
                     and channel in command[1:])
    first = Socket(server.ws_url(user="first", room=room_name))
    code, _ = first.recv_close(timeout=SUBSCRIBE_TIMEOUT + 5)  # gave up after SUBSCRIBE_TIMEOUT
    assert code == 1011
    late = Socket(server.ws_url(user="late", room=room_name))
    wait_until(lambda: [command[0].upper() for _, _, command in redis_proxy.held]
               == [b"SUBSCRIBE", b"UNSUBSCRIBE", b"SUBSCRIBE"], message="three commands held")
    return late


def subscriber_count(redis_server, channel):
    """A function: how many connections Redis has subscribed to channel now."""
    admin = redis.Redis.from_url(redis_server.url)
    return lambda: admin.pubsub_numsub(channel)[0][1]


def events_within(sock, seconds):
    """The events sock receives in the next `seconds` (a window to watch, not a wait)."""
    deadline, events = time.monotonic() + seconds, []
    while time.monotonic() < deadline:
        try:
            events.append(sock.recv(timeout=max(0.01, deadline - time.monotonic())))
        except websocket.WebSocketTimeoutException:
            break
    return events
