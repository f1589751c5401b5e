"""The id chain: every event names its predecessor (prev), across processes and
transports, so a client can tell a whole history from one with a gap."""

import requests

from tests.servers import Socket, assert_chained, wait_until


def test_the_chain_holds_across_processes_and_transports(redis_server, start_server, room_name):
    a, b = start_server(redis_server.url, workers=2), start_server(redis_server.url, workers=2)
    sock = a.join(room_name, "ws-user")
    events = b.stream(room_name, "sse-user")
    sock.send("over a websocket")
    b.post(room_name, "over http")
    requests.post(f"{a.url}/sse/room/messages", params={"user": "sse-user", "room": room_name},
                  data={"message": "over sse"}, timeout=5)
    texts = ["over a websocket", "over http", "over sse"]
    seen_ws = sock.recv_until(lambda e: e["text"] == "over sse")
    seen_sse = events.recv_until(lambda e: e["text"] == "over sse")
    archive = a.archive(room_name)
    assert archive[0]["prev"] == 0  # a new room
    assert_chained(archive)
    assert_chained(sock.history + seen_ws)
    assert seen_sse == seen_ws[-len(seen_sse):]
    assert [e["text"] for e in archive if e["type"] == "message"] == texts
    sock.close()
    events.close()


def test_a_resume_after_the_archive_was_trimmed_shows_a_broken_chain(
        redis_server, start_server, room_name):
    server = start_server(redis_server.url, CHAT_ARCHIVE_SIZE=5)
    sock = server.join(room_name, "ada")
    held = sock.history[-1]["id"]
    sock.close()
    posted = [server.post(room_name, f"m{i}") for i in range(10)]  # more than the archive keeps
    sock = Socket(server.ws_url(user="ada", room=room_name, lastReceived=held))
    replay = sock.recv_until(lambda e: e["type"] == "join" and e["user"] == "ada")
    assert replay[:5] == posted[5:]  # the archive kept the newest five
    assert replay[0]["prev"] == posted[4]["id"] != held  # the gap is visible
    assert_chained(replay)
    sock.close()


def test_a_redis_restarted_empty_shows_a_broken_chain(redis_server, start_server, room_name):
    server = start_server(redis_server.url)
    sock = server.join(room_name, "ada")
    before = server.post(room_name, "before")
    assert sock.recv() == before
    redis_server.restart()
    wait_until(lambda: requests.get(server.url + "/healthz", timeout=5).status_code == 200,
               message="the server to see Redis again")
    after = wait_until(lambda: server.try_post(room_name, "after"), message="posting again")
    assert sock.recv(timeout=10) == after
    assert after["prev"] == 0 and after["id"] > before["id"]  # the chain starts again
    sock.close()
