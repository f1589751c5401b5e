"""Faults, against real gunicorn processes and a real redis-server that the tests
stop, restart and kill: slow clients, silent peers, Redis going away, workers
dying, graceful shutdown, and a short soak through all of it."""

import os
import random
import signal
import socket
import subprocess
import sys
import time

import gevent
import redis
import requests
import websocket

from tests.servers import Socket, assert_chained, wait_until

# --- a client that reads too slowly --------------------------------------------

def test_a_slow_consumer_is_closed_with_1013_without_delaying_others_and_resumes(
        redis_server, start_server, room_name):
    server = start_server(redis_server.url, CHAT_SEND_QUEUE=16, CHAT_ARCHIVE_SIZE=1000,
                          CHAT_RATE_BURST=10000, CHAT_RATE_PER_SEC=10000)
    fast = server.join(room_name, "fast")
    slow = Socket(server.ws_url(user="slow", room=room_name),
                  sockopt=[(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)])
    slow_join = slow.recv_until(lambda e: e["type"] == "join" and e["user"] == "slow")[-1]
    big = "x" * 1990
    reader = gevent.spawn(fast.recv_until, lambda e: e["text"].startswith("299 "), timeout=30)
    sent = [server.post(room_name, f"{i} {big}") for i in range(300)]  # ~600 KB: slow stops reading
    got = reader.get(timeout=10)  # the fast client, reading all along, is not held up
    assert [e["id"] for e in got if e["type"] == "message"] == [e["id"] for e in sent]
    # slow has stopped reading: it is cut off once its oldest waiting event waited the grace
    wait_until(lambda: "closing a slow client" in server.log(), timeout=10,
               message="the slow client to be cut off")
    code, events = slow.recv_close(timeout=10)
    assert code == 1013
    assert "closing a slow client" in server.log() and "user=slow" in server.log()
    delivered = [e["id"] for e in events]
    assert delivered == [e["id"] for e in sent[:len(delivered)]]  # whole events, in order
    assert len(delivered) < len(sent)
    last = delivered[-1] if delivered else slow_join["id"]
    again = Socket(server.ws_url(user="slow", room=room_name, lastReceived=last))
    replay = again.recv_until(lambda e: e["type"] == "join" and e["user"] == "slow")
    missed = [e["id"] for e in replay if e["type"] == "message"]
    assert delivered + missed == [e["id"] for e in sent]  # nothing archived is missed
    fast.close()
    again.close()


def test_under_a_flood_on_a_busy_machine_only_the_reader_that_stopped_is_cut_off(
        redis_server, start_server, room_name):
    server = start_server(redis_server.url, CHAT_SEND_QUEUE=16, CHAT_ARCHIVE_SIZE=1000,
                          CHAT_MAX_MESSAGE_CHARS=60000, CHAT_RATE_BURST=10000,
                          CHAT_RATE_PER_SEC=10000)
    fast = server.join(room_name, "fast")
    slow = Socket(server.ws_url(user="slow", room=room_name),
                  sockopt=[(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)])
    slow.recv_until(lambda e: e["type"] == "join" and e["user"] == "slow")
    def read_with_a_brief_stall():
        """A healthy reader: everything as fast as it can, but for one half-second
        stall (a pause of its own, or a machine too busy to run it)."""
        got = fast.recv_until(lambda e: e["text"].startswith("50 "), timeout=120)
        gevent.sleep(0.5)
        return got + fast.recv_until(lambda e: e["text"].startswith("199 "), timeout=120)

    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        reader = gevent.spawn(read_with_a_brief_stall)
        big = "x" * 59_990
        sent = [server.post(room_name, f"{i} {big}") for i in range(200)]  # 12 MB
        got = reader.get(timeout=120)
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    assert [e["id"] for e in got if e["type"] == "message"] == [e["id"] for e in sent]
    # the reader that stopped was cut off (it read nothing for longer than the close
    # handshake's grace too, so the server then dropped the connection)
    wait_until(lambda: "user=slow code=1013" in server.log(), timeout=10,
               message="the reader that stopped to be closed with 1013")
    closed = [line for line in server.log().splitlines() if "closing a slow client" in line]
    assert len(closed) == 1 and "user=slow" in closed[0]  # never the one reading all along
    slow.close()
    fast.send("still here")
    assert fast.recv_until(lambda e: e["text"] == "still here")[-1]["user"] == "fast"
    fast.close()


# --- a peer that stops answering pings -------------------------------------------

def test_a_silent_peer_is_closed_within_two_ping_intervals_and_its_leave_posted(
        redis_server, start_server, room_name):
    server = start_server(redis_server.url, CHAT_PING_INTERVAL=0.5)
    watcher = server.join(room_name, "watcher")
    silent = websocket.create_connection(server.ws_url(user="silent", room=room_name), timeout=5)
    watcher.recv_until(lambda e: e["type"] == "join" and e["user"] == "silent")
    started = time.monotonic()  # silent never reads again, so never answers a ping
    leave = watcher.recv_until(lambda e: e["type"] == "leave", timeout=5)[-1]
    assert leave["user"] == "silent"
    assert time.monotonic() - started < 2 * 0.5 + 0.5  # two intervals, plus scheduling slack
    silent.close()
    watcher.close()


def test_a_peer_that_answers_pings_stays(redis_server, start_server, room_name):
    server = start_server(redis_server.url, CHAT_PING_INTERVAL=0.3)
    ws = websocket.create_connection(server.ws_url(user="ada", room=room_name), timeout=5)
    pings = 0
    deadline = time.monotonic() + 1.5  # five intervals
    while time.monotonic() < deadline:
        ws.settimeout(deadline - time.monotonic())
        try:
            frame = ws.recv_frame()
        except websocket.WebSocketTimeoutException:
            break
        if frame.opcode == websocket.ABNF.OPCODE_PING:
            pings += 1
            ws.pong(frame.data)
        assert frame.opcode != websocket.ABNF.OPCODE_CLOSE
    assert pings >= 3
    ws.close()


# --- Redis going away ----------------------------------------------------------------

def test_while_redis_is_down_everything_answers_503_and_nothing_is_posted(
        redis_server, start_server, room_name):
    server = start_server(redis_server.url, workers=2)
    watcher = server.join(room_name, "watcher")
    before = server.post(room_name, "before")
    assert watcher.recv() == before
    redis_server.stop()
    wait_until(lambda: requests.get(server.url + "/healthz", timeout=5).status_code == 503)
    assert requests.get(server.url + "/healthz", timeout=5).json() == {"status": "unavailable"}
    response = requests.post(f"{server.url}/longpolling/room/messages",
                             params={"user": "ada", "room": room_name}, data={"message": "lost"})
    assert response.status_code == 503 and response.json()["error"]
    page = requests.post(f"{server.url}/refresh/room", params={"user": "ada", "room": room_name},
                         data={"message": "lost"}, allow_redirects=False)
    assert page.status_code == 503 and "text/html" in page.headers["Content-Type"]
    response = requests.get(f"{server.url}/longpolling/room/messages",
                            params={"room": room_name, "lastReceived": 0}, timeout=15)
    assert response.status_code == 503 and response.json()["error"]
    newcomer = Socket(server.ws_url(user="late", room=room_name))  # accepted, then 1011
    assert newcomer.recv_close(timeout=10)[0] == 1011
    watcher.send("lost too")  # an open socket is told, and kept
    assert watcher.recv()["type"] == "error"

    redis_server.start()  # back, empty: every process recovers by itself
    wait_until(lambda: requests.get(server.url + "/healthz", timeout=5).status_code == 200)
    after = wait_until(lambda: server.try_post(room_name, "after"), timeout=15)
    assert after["id"] > before["id"]
    assert watcher.recv(timeout=10) == after  # fed again, no restart
    for _ in range(6):  # both workers answer again; nothing was half-posted
        assert wait_until(lambda: server.archive(room_name), timeout=5) == [after]
    watcher.close()


def test_a_server_starts_while_redis_is_down_and_recovers(redis_server, start_server, room_name):
    redis_server.stop()
    server = start_server(redis_server.url)
    assert requests.get(server.url + "/healthz", timeout=5).status_code == 503
    redis_server.start()
    wait_until(lambda: requests.get(server.url + "/healthz", timeout=5).status_code == 200)
    wait_until(lambda: server.try_post(room_name, "hello"), timeout=15)
    sock = Socket(server.ws_url(user="ada", room=room_name))
    assert sock.recv()["text"] == "hello"
    sock.close()


# --- workers dying, and stopping gracefully ---------------------------------------------

def test_a_killed_worker_is_replaced_and_its_clients_resume_without_loss(
        redis_server, start_server, room_name):
    server = start_server(redis_server.url, workers=2, CHAT_ARCHIVE_SIZE=1000)
    socks, last_seen = [], []
    for i in range(8):
        sock = Socket(server.ws_url(user=f"u{i}", room=room_name))
        socks.append(sock)
        last_seen.append(sock.recv_until(lambda e, i=i: e["type"] == "join" and e["user"] == f"u{i}")[-1]["id"])
    ports = {sock.ws.sock.getsockname()[1] for sock in socks}
    held = {pid: server.connections(pid, ports) for pid in server.worker_pids()}
    assert sum(held.values()) == 8
    victim = max(held, key=held.get)
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: victim not in server.worker_pids() and len(server.worker_pids()) == 2,
               message="gunicorn to replace the killed worker")
    posted = [wait_until(lambda i=i: server.try_post(room_name, f"after kill {i}"))["id"]
              for i in range(5)]
    resumed = 0
    for i, sock in enumerate(socks):
        got = []
        try:
            while len(got) < 5:
                event = sock.recv(timeout=2)
                last_seen[i] = event["id"]
                if event["type"] == "message":
                    got.append(event["id"])
        except (ConnectionError, websocket.WebSocketException, OSError):
            resumed += 1  # served by the killed worker: reconnect and resume
            again = Socket(server.ws_url(user=f"u{i}", room=room_name, lastReceived=last_seen[i]))
            replay = again.recv_until(lambda e, i=i: e["type"] == "join" and e["user"] == f"u{i}")
            got += [e["id"] for e in replay if e["type"] == "message"]
            again.close()
        sock.close()
        assert got == posted, f"u{i}"  # every event, once, in order
    assert resumed == held[victim]  # exactly the killed worker's clients had to resume


def test_sigterm_closes_websockets_with_1012_and_answers_long_polls(
        redis_server, start_server, room_name):
    server = start_server(redis_server.url, workers=2)
    sock = server.join(room_name, "ada")
    last = server.post(room_name, "x")["id"]
    assert sock.recv()["id"] == last
    poll = gevent.spawn(requests.get, f"{server.url}/longpolling/room/messages",
                        params={"room": room_name, "lastReceived": last}, timeout=30)
    gevent.sleep(0.3)
    assert not poll.ready()
    started = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    assert sock.recv_close(timeout=5)[0] == 1012
    response = poll.get(timeout=5)
    assert response.status_code == 200 and response.json() == []
    server.process.wait(timeout=10)
    assert time.monotonic() - started < 5  # well inside the graceful timeout


# --- soak: clients come and go while Redis restarts ---------------------------------------

def test_soak_clients_chat_and_reconnect_while_redis_restarts(redis_server, start_server, room_name):
    server = start_server(redis_server.url, workers=2, CHAT_ARCHIVE_SIZE=10000,
                          CHAT_RATE_BURST=10000, CHAT_RATE_PER_SEC=10000)
    rng = random.Random(7)
    received = {f"s{i}": [] for i in range(6)}
    stop_at = time.monotonic() + 12

    def session(user):
        seen = received[user]
        while time.monotonic() < stop_at:
            query = {"lastReceived": seen[-1]["id"]} if seen else {}
            try:
                sock = Socket(server.ws_url(user=user, room=room_name, **query), timeout=3)
                for _ in range(rng.randint(1, 4)):
                    sock.send(f"{user} says {rng.random():.6f}")
                    read_for(sock, seen, rng.uniform(0.05, 0.4))
                sock.close()
            except (ConnectionError, OSError, websocket.WebSocketException):
                gevent.sleep(0.1)  # back off while Redis is away

    def read_for(sock, seen, seconds):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                event = sock.recv(timeout=max(0.01, deadline - time.monotonic()))
            except websocket.WebSocketTimeoutException:
                return
            if event.get("type") != "error":
                seen.append(event)

    def restart_redis():
        gevent.sleep(4)
        redis_server.restart()

    gevent.joinall([gevent.spawn(session, u) for u in received] + [gevent.spawn(restart_redis)],
                   raise_error=True)
    final = wait_until(lambda: server.archive(room_name), timeout=15)
    for user, seen in received.items():  # catch up one last time
        sock = Socket(server.ws_url(user=user, room=room_name, lastReceived=seen[-1]["id"]))
        seen += sock.recv_until(lambda e: e["type"] == "join" and e["user"] == user)
        sock.close()
    final = server.archive(room_name)
    assert len(final) > 20
    for user, seen in received.items():
        ids = [e["id"] for e in seen]
        assert ids == sorted(set(ids)), f"{user}: duplicates or out of order"
        have = {e["id"] for e in seen}
        missing = [e for e in final if e["id"] not in have and e["id"] < ids[-1]]
        assert missing == [], f"{user} missed archived events"


# --- a Redis that stops answering, a subscriber connection killed, a bad message ---

def healthz(server):
    try:
        return requests.get(server.url + "/healthz", timeout=10).status_code
    except requests.RequestException:
        return None


def test_a_stalled_redis_gives_503_without_hanging_and_resumes_without_a_gap(
        redis_server, start_server, room_name):
    server = start_server(redis_server.url)
    sock = server.join(room_name, "ada")
    before = server.post(room_name, "before the stall")
    assert sock.recv() == before
    redis_server.process.send_signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        response = requests.post(f"{server.url}/longpolling/room/messages",
                                 params={"user": "ada", "room": room_name},
                                 data={"message": "during the stall"}, timeout=15)
        assert response.status_code == 503  # within the command timeout, never a hang
        assert time.monotonic() - started < 7
        wait_until(lambda: healthz(server) == 503, timeout=10, message="/healthz to say 503")
    finally:
        redis_server.process.send_signal(signal.SIGCONT)
    wait_until(lambda: healthz(server) == 200, timeout=15, message="/healthz to recover")
    after = wait_until(lambda: server.try_post(room_name, "after the stall"), timeout=10)
    got = sock.recv_until(lambda e: e["id"] == after["id"], timeout=10)
    # The post sent into the stall was answered 503, but Redis still had it and
    # ran it when it resumed: it may show up, in its place in the chain.
    assert [e["text"] for e in got] in (["after the stall"], ["during the stall", "after the stall"])
    assert got[0]["prev"] == before["id"]  # no gap in the chain
    assert_chained(got)
    sock.close()


def test_a_subscriber_connection_killed_by_redis_is_replaced_and_backfilled(
        redis_server, start_server, room_name):
    server = start_server(redis_server.url, workers=2)
    sock = server.join(room_name, "ada")
    admin = redis.Redis.from_url(redis_server.url)
    for i in range(3):
        wait_until(lambda: len(admin.client_list(_type="pubsub")) == 2,
                   message="one subscriber connection per worker")
        assert admin.client_kill_filter(_type="pubsub") == 2
        event = wait_until(lambda: server.try_post(room_name, f"after kill {i}"))
        assert sock.recv(timeout=10) == event
    wait_until(lambda: healthz(server) == 200, message="/healthz after the kills")
    assert_chained(server.archive(room_name))
    sock.close()


def test_a_malformed_message_published_by_hand_stops_nothing(
        redis_server, start_server, room_name):
    server = start_server(redis_server.url, workers=2)
    sock = server.join(room_name, "ada")
    channel = f"chat:{room_name}:events"
    far_ahead = 99_999_999_999_999_999  # an id that would make every real one look old
    for junk in ["hello", "1 x {}", "", "9 9", f'0 {far_ahead} {{"id":{far_ahead},"x":1}}']:
        subprocess.run(["redis-cli", "-p", str(redis_server.port), "PUBLISH", channel, junk],
                       check=True, capture_output=True)
    event = server.post(room_name, "still here")
    assert sock.recv(timeout=10) == event
    assert healthz(server) == 200
    metrics = requests.get(f"{server.url}/metrics", timeout=5).text
    assert "chat_hub_errors_total" in metrics
    assert "Traceback" not in server.log()  # a bad message is a warning, not a crash
    sock.close()
