import time

from chat_app import create_app
from chat_app.config import Settings
from chat_app.presence import Presence, _now_ms
from chat_app.room import Rooms
from tests.servers import wait_until


def presence(fake_redis, ttl=60.0):
    return Presence(fake_redis, Settings(presence_ttl=ttl))


def open_socket(fake_redis, here, room, user):
    """What Chat.join does: the presence member goes with the join event."""
    Rooms(fake_redis, Settings()).join(room, user, 0, here.socket_opened(room, user))


def close_socket(fake_redis, here, room, user):
    """What Chat.leave does: the member is removed with the leave event."""
    Rooms(fake_redis, Settings()).leave(room, user, here.socket_closed(room, user))


def test_a_user_with_two_tabs_is_listed_once_and_stays_while_one_is_open(fake_redis):
    here = presence(fake_redis)
    open_socket(fake_redis, here, "lobby", "ada")
    open_socket(fake_redis, here, "lobby", "ada")
    open_socket(fake_redis, here, "lobby", "bob")
    assert here.users("lobby") == ["ada", "bob"]
    close_socket(fake_redis, here, "lobby", "ada")
    assert here.users("lobby") == ["ada", "bob"]
    close_socket(fake_redis, here, "lobby", "ada")
    assert here.users("lobby") == ["bob"]


def test_sockets_on_two_processes(fake_redis):
    one, two = presence(fake_redis), presence(fake_redis)
    open_socket(fake_redis, one, "lobby", "ada")
    open_socket(fake_redis, two, "lobby", "ada")
    close_socket(fake_redis, one, "lobby", "ada")
    assert two.users("lobby") == ["ada"]  # still held by the other process
    close_socket(fake_redis, two, "lobby", "ada")
    assert one.users("lobby") == []


def test_http_presence_and_leaving(fake_redis):
    here = presence(fake_redis)
    here.seen("lobby", "carl", now=True)
    open_socket(fake_redis, here, "lobby", "carl")
    here.left("lobby", "carl")
    assert here.users("lobby") == ["carl"]  # the WebSocket still holds carl
    close_socket(fake_redis, here, "lobby", "carl")
    assert here.users("lobby") == []


def test_batched_sightings_are_flushed_within_a_second(fake_redis):
    here = presence(fake_redis)
    here.seen("lobby", "dora")
    wait_until(lambda: here.users("lobby") == ["dora"], timeout=3)


def test_with_a_short_ttl_sightings_are_written_well_within_it(fake_redis):
    here = presence(fake_redis, ttl=1.0)
    here.seen("lobby", "fin")  # a batch a second would write it as it expires
    wait_until(lambda: here.users("lobby") == ["fin"], timeout=0.9, message="fin to be present")


def test_sightings_expire_after_the_ttl(fake_redis):
    here = presence(fake_redis, ttl=1.0)
    here.seen("lobby", "eve", now=True)
    assert here.users("lobby") == ["eve"]
    wait_until(lambda: here.users("lobby") == [], timeout=3, message="eve to expire")


def test_a_long_poll_counts_from_when_it_ends(fake_redis):
    here = presence(fake_redis, ttl=3.0)
    here.poll_ended("lobby", "ida", began=_now_ms() - 10_000)  # began over 3 TTLs ago
    wait_until(lambda: here.users("lobby") == ["ida"], timeout=3, message="the end to count")


def test_a_poll_under_way_when_its_user_left_does_not_count(fake_redis):
    here = presence(fake_redis)
    began = _now_ms() - 1000
    here.left("lobby", "jan")
    here.poll_ended("lobby", "jan", began)
    wait_until(lambda: not here._seen, timeout=3, message="the batch to be written")
    assert here.users("lobby") == []


def test_a_poll_begun_after_leaving_counts_even_beside_one_from_before(fake_redis):
    here = presence(fake_redis)
    began_before = _now_ms() - 1000
    here.left("lobby", "kim")
    left_at = _now_ms()
    wait_until(lambda: _now_ms() > left_at)          # the next poll begins after the leave
    here.seen("lobby", "kim")                        # that poll begins...
    here.poll_ended("lobby", "kim", began_before)    # ...as the old one ends, in one batch
    wait_until(lambda: here.users("lobby") == ["kim"], timeout=3)


def test_users_are_sorted_by_code_point_and_rooms_are_isolated(fake_redis):
    here = presence(fake_redis)
    for user in ("zoë", "Zed", "ada", "Ängel"):
        here.seen("lobby", user, now=True)
    here.seen("other", "olga", now=True)
    assert here.users("lobby") == sorted(["zoë", "Zed", "ada", "Ängel"]) == ["Zed", "ada", "zoë", "Ängel"]


def test_route(http):
    http.get("/longpolling?user=ada&room=p1")
    response = http.get("/presence?room=p1")
    assert response.status_code == 200 and response.json == {"room": "p1", "users": ["ada"]}
    assert http.get("/presence").json == {"room": "lobby", "users": []}
    bad = http.get("/presence?room=BAD")
    assert bad.status_code == 400 and "error" in bad.json


def test_every_transport_counts_and_leaving_pages_end_presence(http):
    http.get("/refresh/room?user=ref&room=p2")
    http.get("/longpolling/room/messages?user=poll&room=p2&lastReceived=0")
    http.get("/longpolling/room/messages?room=p2")  # no user: not a presence
    wait_until(lambda: http.get("/presence?room=p2").json["users"] == ["poll", "ref"], timeout=3)
    http.get("/refresh/room/leave?user=ref&room=p2")
    assert http.get("/presence?room=p2").json["users"] == ["poll"]


def test_a_poll_that_ends_after_its_user_left_does_not_bring_them_back(http, app):
    import gevent
    presence = app.extensions["chat"].presence
    http.get("/longpolling?user=fay&room=p3")
    last = http.get("/longpolling/room/messages?room=p3").json[-1]["id"]
    poll = gevent.spawn(app.test_client().get,
                        f"/longpolling/room/messages?user=fay&room=p3&lastReceived={last}")
    hub = app.extensions["chat"].hub
    wait_until(lambda: any(listener.room == "p3" for listener in hub.listeners()),
               message="the poll to wait")
    http.get("/longpolling/room/leave?user=fay&room=p3")  # wakes the poll with fay's leave
    assert poll.get(timeout=5).status_code == 200
    wait_until(lambda: not presence._seen, timeout=3, message="the batch to be written")
    assert presence.users("p3") == []


def test_a_poller_stays_present_for_the_ttl_after_a_poll_longer_than_the_ttl():
    app = create_app(Settings(secret_key="test", presence_ttl=2.0, longpoll_timeout=3.0))
    http = app.test_client()
    last = http.get("/longpolling/room/messages?room=p5").json
    assert last == []
    began = time.monotonic()
    assert http.get("/longpolling/room/messages?user=lee&room=p5&lastReceived=0").json == []
    assert time.monotonic() - began >= 3.0  # the poll outlived the TTL of its start
    wait_until(lambda: http.get("/presence?room=p5").json["users"] == ["lee"], timeout=1.5,
               message="lee, who has just ended a poll, to be present")


def test_polling_again_after_leaving_is_presence_again(http):
    http.get("/longpolling/room/leave?user=gus&room=p4")
    http.get("/longpolling/room/messages?user=gus&room=p4")
    wait_until(lambda: http.get("/presence?room=p4").json["users"] == ["gus"], timeout=3)


def test_a_refresh_of_many_sockets_goes_out_in_slices(fake_redis, monkeypatch):
    here = presence(fake_redis)
    for i in range(450):
        here.socket_opened(f"room{i % 9}", f"user{i}")
    slices = []
    monkeypatch.setattr(here, "_write", lambda scores: slices.append(len(scores)))
    here._refresh_sockets()
    assert slices == [200, 200, 50]  # YIELD_EVERY members a round trip
