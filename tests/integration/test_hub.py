"""The hub across real processes: a real redis-server, real gunicorn workers."""

import json

import gevent
import requests

from chat_app.config import Settings
from chat_app.control import Control
from chat_app.exceptions import StoreUnavailable
from chat_app.hub import Hub
from chat_app.room import Rooms
from chat_app.store import connect
from tests.servers import Socket, wait_until
from tests.unit.test_hub import FakeListener, post, texts


def test_events_published_while_disconnected_are_backfilled(redis_server):
    store = connect(redis_server.url)
    settings = Settings(rate_burst=100)
    rooms = Rooms(store.commands, settings)
    hub = Hub(rooms, store.nodes, settings, Control(store.commands, settings))
    client = FakeListener()
    hub.attach(client, 0)
    post(rooms, "before")
    wait_until(lambda: len(client.events()) == 1)
    redis = store.commands
    redis.client_kill_filter(_type="pubsub")
    post(rooms, "during")
    wait_until(lambda: len(client.events()) == 2, message="backfill after reconnect")
    post(rooms, "after")
    wait_until(lambda: len(client.events()) == 3)
    assert texts(client) == ["before", "during", "after"]
    hub.stop()


# --- one room across processes (real gunicorn workers sharing a real Redis) ---

def test_two_servers_of_two_workers_behave_as_one(redis_server, start_server, room_name):
    servers = [start_server(redis_server.url, workers=2, CHAT_ARCHIVE_SIZE=500)
               for _ in range(2)]
    socks = [servers[i % 2].join(room_name, f"u{i}") for i in range(12)]
    last_join = servers[0].archive(room_name)[-1]["id"]

    def sender(i):
        for n in range(10):
            if i % 2:
                socks[i].send(f"ws {i}.{n}")
            else:
                requests.post(f"{servers[i // 2 % 2].url}/longpolling/room/messages",
                              params={"user": f"u{i}", "room": room_name},
                              data={"message": f"http {i}.{n}"}, timeout=5)

    gevent.joinall([gevent.spawn(sender, i) for i in range(4)], raise_error=True)
    archive = [e for e in servers[0].archive(room_name) if e["id"] > last_join]
    assert len(archive) == 40
    assert servers[1].archive(room_name)[-40:] == archive  # every process shows the same archive
    for sock in socks:
        got = []
        while len(got) < 40:
            event = sock.recv()
            if event["id"] > last_join:
                got.append(event)
        assert got == archive  # every event, once, in id order
        sock.close()


def test_resume_on_another_server_with_last_received(redis_server, start_server, room_name):
    a, b = (start_server(redis_server.url) for _ in range(2))
    sock = a.join(room_name, "ada")
    seen = a.post(room_name, "seen")
    assert sock.recv()["id"] == seen["id"]
    sock.close()
    missed = [b.post(room_name, f"missed {i}") for i in range(3)]
    sock = Socket(b.ws_url(user="ada", room=room_name, lastReceived=seen["id"]))
    replay = sock.recv_until(lambda e: e["type"] == "join" and e["user"] == "ada")
    assert [e["text"] for e in replay if e["type"] == "message"] == [m["text"] for m in missed]
    sock.close()


def test_ids_keep_increasing_and_clients_keep_receiving_after_redis_restarts_empty(
        redis_server, start_server, room_name):
    server = start_server(redis_server.url, workers=2)
    sock = server.join(room_name, "ada")
    before = server.post(room_name, "before")
    assert sock.recv()["id"] == before["id"]
    redis_server.restart()
    wait_until(lambda: requests.get(server.url + "/healthz", timeout=2).status_code == 200)
    after = wait_until(lambda: server.try_post(room_name, "after"), message="posting again")
    assert after["id"] > before["id"]
    assert server.archive(room_name) == [after]  # Redis lost the rest
    assert sock.recv(timeout=10) == after  # the open socket is fed again, without a restart


def test_a_listener_that_has_seen_no_live_event_yet_is_backfilled_after_a_restart(redis_server):
    from chat_app.longpoll import LongPoll

    store = connect(redis_server.url)
    settings = Settings(rate_burst=100)
    rooms = Rooms(store.commands, settings)
    hub = Hub(rooms, store.nodes, settings, Control(store.commands, settings))
    before = json.loads(rooms.post("lobby", "message", "ada", "before"))
    poll = LongPoll("lobby", {})
    hub.attach(poll, before["id"])  # the hub has delivered nothing in this room yet
    waiting = gevent.spawn(poll.wait, 10)
    redis_server.restart()  # empty; the post below may land before the hub resubscribes
    after = wait_until(lambda: try_post(rooms, "after"), message="posting again")
    waiting.get(timeout=12)
    assert json.loads(poll.response().get_data()) == [after]
    hub.stop()


def try_post(rooms, text):
    try:
        return json.loads(rooms.post("lobby", "message", "ada", text))
    except StoreUnavailable:
        return None
