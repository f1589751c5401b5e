"""On a Redis Cluster (3 masters, 3 replicas, scripts/redis-cluster.sh):
rooms in one slot each, spread over the shards, sharded pub/sub, and the
chat going on through a slot move and a master's death.

Two gunicorn servers name different nodes of the cluster in REDIS_URL (one
a master, one a replica): each finds the whole cluster from there.
"""

import itertools
import threading
import time

import pytest
import redis
import requests
import websocket

from chat_app.config import Settings
from chat_app.room import Rooms
from tests.conftest import API_KEY
from tests.servers import RedisCluster, Socket, assert_chained, wait_until
from tests.integration.conftest import require_redis_server

_rooms = itertools.count()


def cluster_room(prefix="c"):
    return f"{prefix}{time.monotonic_ns() % 100000}-{next(_rooms)}"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    require_redis_server()
    cluster = RedisCluster(tmp_path_factory.mktemp("cluster")).start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
def servers(cluster, tmp_path_factory):
    """Two servers of 2 workers, on a master and on a replica of the cluster."""
    from tests.servers import Server

    logs = tmp_path_factory.mktemp("logs")
    replica = next(port for port, node in cluster.nodes().items() if node[1] == "replica")
    started = [Server(cluster.url(port), workers=2, log_dir=logs, CHAT_RATE_BURST=10000,
                      CHAT_PING_INTERVAL=5, CHAT_API_KEY=API_KEY).start()
               for port in (cluster.masters()[0], replica)]
    yield started
    for server in started:
        server.stop()


def wait_healthy(server, timeout=15):
    wait_until(lambda: requests.get(server.url + "/healthz", timeout=5).status_code == 200,
               timeout=timeout, message=f"{server.url}/healthz 200")


def test_events_flow_between_servers_on_every_transport_in_id_order(servers):
    a, b = servers
    room = cluster_room()
    sock = a.join(room, "ws-user")
    events = b.stream(room, "sse-user")
    newest = sock.history[-1]["id"]
    sock.send("over a websocket")
    b.post(room, "over http")
    requests.post(f"{a.url}/sse/room/messages", params={"user": "sse-user", "room": room},
                  data={"message": "over sse"}, timeout=5)
    poll = requests.get(f"{b.url}/longpolling/room/messages",
                        params={"room": room, "lastReceived": newest}, timeout=10).json()
    seen_ws = sock.recv_until(lambda e: e["text"] == "over sse")
    seen_sse = events.recv_until(lambda e: e["text"] == "over sse")
    texts = ["over a websocket", "over http", "over sse"]
    assert [e["text"] for e in seen_ws if e["type"] == "message"] == texts
    assert seen_sse == seen_ws[-len(seen_sse):]
    assert poll and poll == seen_ws[:len(poll)]  # what had come by then, through the other server
    archive = a.archive(room)
    assert archive == b.archive(room)
    assert_chained(archive)
    assert archive[-len(seen_ws):] == seen_ws
    page = requests.get(f"{b.url}/refresh/room", params={"user": "page-user", "room": room},
                        timeout=5).text  # active refresh: the archive as HTML
    assert all(text in page for text in texts)
    sock.close()
    events.close()


def rooms_on_every_master(cluster, per_master):
    """Room names chosen so that each master owns per_master of them."""
    rooms, masters = [], {port: 0 for port in cluster.masters()}
    while min(masters.values()) < per_master:
        room = cluster_room("spread")
        owner = cluster.owner(f"chat:{{{room}}}:last")
        if masters[owner] < per_master:
            masters[owner] += 1
            rooms.append(room)
    return rooms


def test_each_rooms_keys_live_on_one_master_and_its_channel_is_a_shard_channel(cluster, servers):
    a, _ = servers
    rooms = rooms_on_every_master(cluster, per_master=4)  # a dozen, over all three
    sockets = [a.join(room, "ada") for room in rooms]
    for room in rooms:
        a.post(room, "hello")
    for room in rooms:
        owner = cluster.client(cluster.owner(f"chat:{{{room}}}:last"))
        keys = [f"chat:{{{room}}}:{name}" for name in ("last", "archive", "presence")]
        assert owner.exists(*keys) == 3, room  # one master holds them all
        wait_until(lambda: f"chat:{{{room}}}:events".encode()
                   in owner.execute_command("PUBSUB SHARDCHANNELS"), message=f"{room} subscribed")
    for port in cluster.ports:  # no plain channel carries a room
        plain = cluster.client(port).execute_command("PUBSUB CHANNELS")
        assert not [c for c in plain if c.endswith(b":events")], plain
    assert {cluster.owner(f"chat:{{{room}}}:last") for room in rooms} == set(cluster.masters())
    for sock in sockets:
        sock.close()


def test_the_archives_of_rooms_on_every_master_are_read_in_one_call(cluster):
    client = redis.cluster.RedisCluster.from_url(cluster.url())
    rooms = Rooms(client, Settings(archive_size=100), cluster=True)
    names = rooms_on_every_master(cluster, per_master=2)
    for count, room in enumerate(names):
        for _ in range(count * 10):  # the last rooms more than a window behind
            rooms.post(room, "join", "ada")
    wanted = [(room, after) for room in names for after in (0, 5, time.time_ns() // 1000)]
    assert rooms.histories(wanted) == [rooms.history(room, after) for room, after in wanted]
    assert [len(events) for events in rooms.histories([(room, 0) for room in names])] == \
        [count * 10 for count in range(len(names))]
    client.close()


def test_presence_metrics_and_disconnect_on_a_cluster(servers):
    a, b = servers
    room = cluster_room("ops")
    sockets = [a.join(room, "ada"), b.join(room, "ada"), b.join(room, "bob")]
    requests.get(f"{a.url}/refresh/room", params={"user": "cy", "room": room}, timeout=5)
    wait_until(lambda: requests.get(f"{b.url}/presence", params={"room": room}, timeout=5)
               .json()["users"] == ["ada", "bob", "cy"], message="everyone present")
    disconnected = requests.post(f"{b.url}/api/rooms/{room}/disconnect", json={"user": "ada"},
                                 headers={"Authorization": f"Bearer {API_KEY}"}, timeout=5)
    assert disconnected.json() == {"disconnected": 2}  # one on each server
    for sock in sockets[:2]:
        assert sock.recv_close()[0] == 1008
    metrics = requests.get(f"{a.url}/metrics", timeout=5).text
    assert 'chat_events_posted_total{type="join"}' in metrics
    sockets[2].close()


class Poster(threading.Thread):
    """Posts numbered messages through a server until stopped, recording each
    answer: (text, event or None, seconds the request took)."""

    def __init__(self, server, room, interval=0.02):
        super().__init__(daemon=True)
        self.server, self.room, self.interval = server, room, interval
        self.results = []
        self.stopping = threading.Event()

    def run(self):
        for i in itertools.count():
            if self.stopping.is_set():
                return
            started = time.monotonic()
            try:
                event = self.server.try_post(self.room, f"p{i}")
            except requests.RequestException:
                event = None
            self.results.append((f"p{i}", event, time.monotonic() - started))
            time.sleep(self.interval)

    def stop(self):
        self.stopping.set()
        self.join(timeout=30)

    def posted(self):
        return [event for _, event, _ in self.results if event is not None]


def test_a_slot_moved_to_another_master_loses_and_duplicates_nothing(cluster, servers):
    a, b = servers
    room = cluster_room("moving")
    key = f"chat:{{{room}}}:last"
    sock = b.join(room, "ws-user")
    events = a.stream(room, "sse-user")
    poster = Poster(a, room)
    poster.start()
    wait_until(lambda: len(poster.posted()) >= 20, message="posts before the move")
    source = cluster.owner(key)
    target = next(port for port in cluster.masters() if port != source)
    cluster.migrate(key, target)
    assert cluster.owner(key) == target
    wait_until(lambda: len(poster.posted()) >= 80, timeout=20, message="posts after the move")
    poster.stop()
    posted = poster.posted()
    assert posted[-1]["id"] > posted[0]["id"]
    last = posted[-1]["text"]
    seen_ws = [e for e in sock.recv_until(lambda e: e["text"] == last, timeout=15)
               if e["type"] == "message"]
    seen_sse = [e for e in events.recv_until(lambda e: e["text"] == last, timeout=15)
                if e["type"] == "message"]
    assert seen_ws == posted  # every event posted, once, in order
    assert seen_sse == posted
    assert_chained(posted)
    assert [text for text, event, _ in poster.results if event is None] == []
    sock.close()
    events.close()


@pytest.fixture
def fresh_cluster(tmp_path):
    """A cluster of its own: a test that kills a master leaves it degraded."""
    require_redis_server()
    cluster = RedisCluster(tmp_path / "cluster").start()
    yield cluster
    cluster.stop()


class Listener:
    """A WebSocket that follows a room through failures: closed, it reconnects
    with lastReceived = the last id it has, until stopped. Records every event."""

    def __init__(self, server, room, user):
        self.server, self.room, self.user = server, room, user
        self.events, self.reconnects = [], 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stopping.is_set():
            query = {"user": self.user, "room": self.room}
            if self.events:
                query["lastReceived"] = self.events[-1]["id"]
            try:
                sock = Socket(self.server.ws_url(**query))
                while not self.stopping.is_set():
                    try:
                        self.events.append(sock.recv(timeout=0.5))
                    except websocket.WebSocketTimeoutException:
                        continue
            except Exception:
                self.reconnects += 1
                time.sleep(0.2)

    def stop(self):
        self.stopping.set()
        self.thread.join(timeout=10)


def test_a_masters_death_is_followed_to_its_promoted_replica(fresh_cluster, start_server):
    cluster = fresh_cluster
    room = cluster_room("failover")
    key = f"chat:{{{room}}}:last"
    victim = cluster.owner(key)
    others = [port for port in cluster.masters() if port != victim]
    a = start_server(cluster.url(others[0]), workers=2, CHAT_RATE_BURST=10000)
    b = start_server(cluster.url(others[1]), workers=2, CHAT_RATE_BURST=10000)
    listeners = [Listener(a, room, "on-a"), Listener(b, room, "on-b")]
    wait_until(lambda: all(listener.events for listener in listeners), message="listeners joined")
    poster = Poster(a, room)
    poster.start()
    wait_until(lambda: len(poster.posted()) >= 20, message="posts before the kill")
    cluster.kill(victim)
    killed_at = time.monotonic()
    wait_until(lambda: cluster.owner(key) != victim, timeout=30, message="a replica promoted")
    promoted_at = time.monotonic()
    before = len(poster.results)
    wait_until(lambda: any(event for _, event, _ in poster.results[before:]), timeout=15,
               message="a post succeeding after the promotion")
    recovered_at = time.monotonic()
    first_after = len(poster.results)
    wait_until(lambda: len(poster.results) >= first_after + 30, message="posts after recovery")
    poster.stop()
    after = [event for _, event, _ in poster.results[first_after:] if event is not None]
    assert len(after) >= 25  # posts succeed again once promoted
    assert max(seconds for _, _, seconds in poster.results) < 8  # a 503, never a hang
    assert recovered_at - killed_at < RedisCluster.NODE_TIMEOUT_MS / 1000 + 15
    ids = [event["id"] for event in poster.posted()]
    assert ids == sorted(set(ids))  # ids kept increasing through the failover
    wait_healthy(a)
    wait_healthy(b)
    for listener in listeners:
        wait_until(lambda: any(e["id"] == after[-1]["id"] for e in listener.events),
                   timeout=15, message=f"{listener.user} has the last post")
        listener.stop()
        seen = [e for e in listener.events if e["id"] >= after[0]["id"]]
        assert [e for e in seen if e["type"] == "message"] == after  # each once, in order
        got = [e["id"] for e in listener.events]
        assert got == sorted(set(got))
    assert promoted_at >= killed_at
