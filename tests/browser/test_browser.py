"""The four chat pages in real headless Chromium, as people use them, against
real gunicorn processes sharing a real redis-server.

Every person has a fresh browser context; each test fails if any of its pages
logged a console error or threw an uncaught error (the restart tests alone
allow the network errors of the server they kill).

A few SSE tests play the stream in the browser with Playwright's routing
(fake_stream), to show what the page does with answers a healthy server does
not give.
"""

import json
import re

import pytest
import requests
from playwright.sync_api import expect

from tests.browser.browser import NETWORK_ERROR, PHONE, TRANSPORTS, post
from tests.servers import wait_until

BUTTONS = list(TRANSPORTS)  # the welcome page's transport buttons, in order


def expect_state(people, kind, timeout=5_000):
    """Waits until each person's connection state (#state) has class `kind`."""
    for person in people:
        expect(person.page.locator("#state")).to_have_class(re.compile(rf"\b{kind}\b"), timeout=timeout)


# --- 1. the welcome page -----------------------------------------------------

@pytest.mark.parametrize("transport", list(TRANSPORTS))
def test_the_welcome_page_leads_to_the_room_page_of_each_transport(
        shared_server, people, room_name, transport):
    ada = people("ada").join(shared_server, room_name, transport)
    page = ada.page
    _, path, _ = TRANSPORTS[transport]
    assert page.url == f"{shared_server.url}{path}?user=ada&room={room_name}"
    expect(page.locator("h1")).to_have_text(f"#{room_name}")
    expect(page.locator(".me")).to_have_text("ada")
    expect(page.locator("body")).to_have_attribute("data-transport", transport)
    expect_state([ada], "connected")
    assert [(r["type"], r["user"], r["text"]) for r in ada.rows()] == [("join", "you", "joined")]


# --- 2. three transports in one room ----------------------------------------

def test_three_transports_in_one_room_see_each_others_messages_joins_and_leaves(
        shared_server, people, room_name):
    ada = people("ada").join(shared_server, room_name, "websocket")
    bob = people("bob").join(shared_server, room_name, "longpolling")
    cyd = people("cyd").join(shared_server, room_name, "refresh")
    everyone = [ada, bob, cyd]
    for person in everyone:
        for other in everyone:
            other.expect_event(person.name, "joined")

    said = {ada: "hello from a WebSocket", bob: "hello from long polling",
            cyd: "hello from a refreshing page"}
    for person, text in said.items():
        person.say(text)
    for person, text in said.items():
        for reader in everyone:
            reader.expect_event(person.name, text)

    # Everyone shows the same events, once each, in the same order.
    ids = [row["id"] for row in cyd.rows()]
    assert ids == sorted(set(ids)) and len(ids) == 6
    for person in (ada, bob):
        assert [row["id"] for row in person.rows()] == ids

    cyd.leave(shared_server)
    for reader in (ada, bob):
        reader.expect_event("cyd", "left")
    bob.leave(shared_server)
    ada.expect_event("bob", "left")


# --- 3. rooms are separate ----------------------------------------------------

def test_two_rooms_do_not_see_each_others_messages(shared_server, people, room_name):
    other_room = room_name + "-b"
    ada = people("ada").join(shared_server, room_name, "websocket")
    bob = people("bob").join(shared_server, room_name, "longpolling")
    cyd = people("cyd").join(shared_server, other_room, "refresh")
    dan = people("dan").join(shared_server, other_room, "websocket")

    ada.say("only for the first room")
    for reader in (ada, bob):
        reader.expect_event("ada", "only for the first room")
    cyd.say("only for the second room")  # cyd's page reloads: the second room's archive
    for reader in (cyd, dan):
        reader.expect_event("cyd", "only for the second room")
    bob.say("first room again")
    for reader in (ada, bob):
        reader.expect_event("bob", "first room again")

    # Each page has shown a later event of its own room: a leak would be there by now.
    for person in (ada, bob):
        rows = person.rows()
        assert {r["user"] for r in rows} == {"you", "ada" if person is bob else "bob"}
        assert "only for the second room" not in [r["text"] for r in rows]
    for person in (cyd, dan):
        rows = person.rows()
        assert {r["user"] for r in rows} == {"you", "dan" if person is cyd else "cyd"}
        assert not {"only for the first room", "first room again"} & {r["text"] for r in rows}


# --- 4. markup is text --------------------------------------------------------

# Each piece calls ran() if a page ever treats it as HTML; the spy records it.
RAN_SPY = "window.__ran = []; window.ran = (what) => window.__ran.push(what);"
PAYLOAD = """<img src=x onerror="ran('img')"><script>ran('script')</script> & &amp; "q" 'q'"""
MARKUP_NAMES = {"websocket": "<img src=x onerror=ran(1)>", "longpolling": "<b onclick=ran(2)>bob</b>",
                "refresh": '"><svg onload=ran(3)>&amp;'}


def test_markup_in_names_and_messages_is_shown_as_text_and_runs_nothing(
        shared_server, people, room_name):
    everyone = []
    for transport, name in MARKUP_NAMES.items():
        # No CSP here: only the pages' own escaping stands between the markup and the DOM.
        person = people(name, bypass_csp=True)
        person.context.add_init_script(RAN_SPY)
        everyone.append(person.join(shared_server, room_name, transport))
    for person in everyone:
        expect(person.page.locator(".me")).to_have_text(person.name)
        person.say(f"{PAYLOAD} via {person.transport}")
    for person in everyone:
        for reader in everyone:
            reader.expect_event(person.name, "joined")
            reader.expect_event(person.name, f"{PAYLOAD} via {person.transport}")

    # One more round trip for every page, so a handler would have had its chance.
    post(shared_server, room_name, "the end")
    for reader in everyone:
        reader.expect_event("poster", "the end")
        page = reader.page
        assert page.evaluate("window.__ran") == []
        assert page.locator("body img, body svg, body b, body script, .me *, #messages span *").count() == 0


# --- 5. scrolling -------------------------------------------------------------

def at_bottom(person):
    person.page.wait_for_function(
        "() => { const log = document.getElementById('messages');"
        " return log.scrollTop >= log.scrollHeight - log.clientHeight - 2; }", timeout=5_000)


@pytest.mark.parametrize("transport", list(TRANSPORTS))
def test_new_messages_scroll_into_view_only_when_the_reader_is_at_the_bottom(
        shared_server, people, room_name, transport):
    for i in range(30):
        post(shared_server, room_name, f"earlier message {i}", user=f"early{i % 5}")
    ada = people("ada", viewport={"width": 800, "height": 500}).join(shared_server, room_name, transport)
    page, log = ada.page, ada.page.locator("#messages")
    assert log.evaluate("el => el.scrollHeight > 2 * el.clientHeight"), "the list must overflow"
    at_bottom(ada)
    expect(ada.entry("ada", "joined")).to_be_in_viewport()

    post(shared_server, room_name, "arrives at the bottom")
    ada.expect_event("poster", "arrives at the bottom")
    expect(ada.entry("poster", "arrives at the bottom")).to_be_in_viewport()
    at_bottom(ada)

    log.hover()
    page.mouse.wheel(0, -100_000)
    page.wait_for_function("() => document.getElementById('messages').scrollTop === 0", timeout=5_000)
    post(shared_server, room_name, "arrives while reading older ones")
    ada.expect_event("poster", "arrives while reading older ones")
    assert log.evaluate("el => el.scrollTop") == 0
    expect(ada.messages.first).to_be_in_viewport()
    expect(ada.entry("poster", "arrives while reading older ones")).not_to_be_in_viewport()

    page.mouse.wheel(0, 100_000)
    at_bottom(ada)
    post(shared_server, room_name, "arrives at the bottom again")
    ada.expect_event("poster", "arrives at the bottom again")
    expect(ada.entry("poster", "arrives at the bottom again")).to_be_in_viewport()
    at_bottom(ada)


# --- 6. reconnecting ----------------------------------------------------------

def test_pushed_pages_reconnect_after_a_server_restart_and_miss_nothing(
        shared_redis, shared_server, start_server, people, room_name):
    server = start_server(shared_redis.url)
    ada = people("ada").join(server, room_name, "websocket")
    bob = people("bob").join(server, room_name, "longpolling")
    readers = [ada, bob]
    ada.expect_event("bob", "joined")
    for person in readers:
        person.allowed = NETWORK_ERROR  # the server they talk to is killed, on purpose
    expect_state(readers, "connected")

    server, missed = kill_and_restart(server, readers, shared_server, start_server, room_name)

    # A quiet restart (ada, whose reconnection would post a join, has left): with
    # nothing new to fetch, the long-polling page still says it is back.
    ada.leave(server)
    bob.expect_event("ada", "left")
    server.kill()
    expect_state([bob], "disconnected")
    start_server(shared_redis.url, port=server.port)
    expect_state([bob], "connected", timeout=20_000)
    after = post(shared_server, room_name, "after the restarts")
    bob.expect_event("poster", after["text"])
    shows_once_in_order(bob, missed + [after])


def kill_and_restart(server, readers, shared_server, start_server, room_name):
    """Kills the readers' server, posts through another one meanwhile, starts it
    again on the same Redis and port: the pages say they are disconnected, then
    show what they missed, once each in order, and are connected again.
    Returns the new server and the events missed."""
    server.kill()
    expect_state(readers, "disconnected")
    # Posted through another process on the same Redis while the pages' server is down.
    missed = [post(shared_server, room_name, f"while you were away {i}") for i in range(3)]
    server = start_server(server.env["REDIS_URL"], port=server.port)
    for person in readers:
        # The pages retry with a backoff of up to 8 s.
        person.expect_event("poster", missed[-1]["text"], timeout=20_000)
        shows_once_in_order(person, missed)
    expect_state(readers, "connected")
    return server, missed


def shows_once_in_order(person, events):
    """The page shows `events` (all from "poster") once each, in order, and no event twice."""
    rows = person.rows()
    assert [r["text"] for r in rows if r["user"] == "poster"] == [e["text"] for e in events]
    ids = [r["id"] for r in rows]
    assert ids == sorted(set(ids))


# --- 7. two server processes --------------------------------------------------

def test_pages_on_two_server_processes_see_each_other(
        shared_redis, shared_server, start_server, people, room_name):
    second = start_server(shared_redis.url)
    ada = people("ada").join(shared_server, room_name, "websocket")
    bob = people("bob").join(second, room_name, "longpolling")
    cyd = people("cyd").join(second, room_name, "websocket")
    everyone = [ada, bob, cyd]
    for person in everyone:
        person.say(f"{person.name} says hi")
    for person in everyone:
        for reader in everyone:
            reader.expect_event(person.name, "joined")
            reader.expect_event(person.name, f"{person.name} says hi")


# --- 7b. a refused message is not lost ---------------------------------------

@pytest.mark.parametrize("transport", ["websocket", "longpolling", "sse"])
def test_a_message_the_rate_limit_refuses_stays_in_the_box_with_the_reason(
        shared_redis, start_server, people, room_name, transport):
    server = start_server(shared_redis.url, CHAT_RATE_BURST=1, CHAT_RATE_PER_SEC=0.001)
    ada = people("ada").join(server, room_name, transport)
    ada.allowed = re.compile(r"\b429\b")  # Chromium logs the refused POST
    ada.say("first")
    ada.expect_event("ada", "first")
    expect(ada.page.locator("#message")).to_have_value("")
    ada.say("second")
    expect(ada.page.locator("#notice")).to_contain_text("too many messages")
    expect(ada.page.locator("#message")).to_have_value("second")
    expect(ada.entry("ada", "second")).to_have_count(0)


# --- 8. the keyboard alone, and a clean console -------------------------------

@pytest.mark.parametrize("transport", list(TRANSPORTS))
def test_the_pages_work_with_the_keyboard_alone(shared_server, people, room_name, transport):
    ada = people("ada")
    page, keys = ada.page, ada.page.keyboard
    page.goto(shared_server.url + "/")
    expect(page.locator("#user")).to_be_focused()
    keys.type("ada")
    keys.press("Tab")
    expect(page.locator("#room")).to_be_focused()
    keys.press("Control+A")
    keys.type(room_name)
    for _ in range(BUTTONS.index(transport) + 1):
        keys.press("Tab")
    expect(page.get_by_role("button", name=TRANSPORTS[transport][0], exact=True)).to_be_focused()
    keys.press("Enter")
    ada.arrive(shared_server, transport)

    box = page.locator("#message")
    expect(box).to_be_focused()
    for text in ("typed, then Enter", "and once more"):
        keys.type(text)
        keys.press("Enter")
        ada.expect_event("ada", text)
        expect(box).to_be_focused()
        expect(box).to_have_value("")
    assert ada.unexpected_errors() == []


# --- a phone-sized screen -----------------------------------------------------

@pytest.mark.parametrize("transport", list(TRANSPORTS))
def test_the_pages_fit_a_phone_even_with_long_names_and_words(
        shared_server, people, room_name, transport):
    name, room = "a-nickname-of-thirty-two-chars-x", f"{room_name}-{'x' * 32}"[:32]
    ada = people(name, viewport=PHONE, is_mobile=True, has_touch=True)
    ada.join(shared_server, room, transport)
    ada.say("w" * 300)
    ada.expect_event(name, "w" * 300)
    page = ada.page
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    # Nothing overflows sideways: not the list, not a bubble (a long word wraps).
    assert ada.messages.evaluate_all("els => els.filter(e => e.scrollWidth > e.clientWidth).length") == 0
    assert page.locator("#messages").evaluate("el => el.scrollWidth <= el.clientWidth")
    for visible in ("h1", ".me", "#state", ".leave", "#message", "#send button"):
        expect(page.locator(visible)).to_be_in_viewport(ratio=1)
    expect(ada.entry(name, "w" * 300)).to_be_in_viewport()


# --- presence: who is here ----------------------------------------------------

def shared_server_presence(server, room):
    return requests.get(f"{server.url}/presence", params={"room": room}, timeout=5).json()["users"]


def expect_here(person, names, timeout=None):
    """Waits until the person's "Here now" list (and the headcount) shows `names`."""
    shown = [f"{n} (you)" if n == person.name else n for n in names]
    timeout = timeout or TRANSPORTS[person.transport][2]
    expect(person.page.locator("#presence > li")).to_have_text(shown, timeout=timeout)
    expect(person.page.locator("#headcount")).to_have_text(f" · {len(names)} here", timeout=timeout)


def test_the_presence_list_follows_people_joining_and_leaving(shared_server, people, room_name):
    ada = people("ada").join(shared_server, room_name, "websocket")
    expect_here(ada, ["ada"])
    bob = people("bob").join(shared_server, room_name, "longpolling")
    cyd = people("cyd").join(shared_server, room_name, "refresh")
    for person in (ada, bob, cyd):
        expect_here(person, ["ada", "bob", "cyd"])
    bob.leave(shared_server)
    for person in (ada, cyd):
        expect_here(person, ["ada", "cyd"])
    second_tab = people("ada")
    second_tab.page.goto(f"{shared_server.url}/websocket/room?user=ada&room={room_name}")
    expect(ada.entry("ada", "joined")).to_have_count(2)
    second_tab.page.close()  # ada still has her first tab open
    expect(ada.entry("ada", "left")).to_have_count(1)
    assert shared_server_presence(shared_server, room_name) == ["ada", "cyd"]
    expect_here(cyd, ["ada", "cyd"])
    ada.leave(shared_server)
    expect_here(cyd, ["cyd"])


# --- 9. server-sent events ----------------------------------------------------

def sse_event(eid, kind, user, text=""):
    """An event as the server sends it."""
    return {"id": eid, "type": kind, "room": "r", "user": user, "text": text,
            "ts": 1_700_000_000_000 + eid}


def fake_stream(page, *answers):
    """Answers the page's GET /sse/room/events in the browser, as the server
    would: answers[i] for the i-th request (the last one for those after), each a
    list of events (a whole stream, which then ends: the browser reconnects by
    itself) or an HTTP status (an error answer: the EventSource closes for good).
    Returns the URLs requested."""
    requested = []

    def answer(route):
        requested.append(route.request.url)
        reply = answers[min(len(requested), len(answers)) - 1]
        if isinstance(reply, int):
            route.fulfill(status=reply, json={"error": "the chat store is unavailable"})
        else:
            body = "retry: 200\n\n" + "".join(f"id: {e['id']}\ndata: {json.dumps(e)}\n\n" for e in reply)
            route.fulfill(status=200, content_type="text/event-stream", body=body)

    page.route(re.compile(r"/sse/room/events\?"), answer)
    return requested


# What Chromium logs when the stream is answered with an error status.
STREAM_REFUSED = re.compile(
    r"^Failed to load resource: the server responded with a status of 503 .*/sse/room/events\?")


def test_the_welcome_page_offers_four_transports_and_the_sse_one_opens_its_page(
        shared_server, people, room_name):
    ada = people("ada")
    fake_stream(ada.page, [sse_event(1, "join", "ada")])
    ada.page.goto(shared_server.url + "/")
    expect(ada.page.locator(".transports button")).to_have_text(
        ["WebSocket", "Long polling", "Active refresh", "Server-sent events"])
    ada.join(shared_server, room_name, "sse")
    page = ada.page
    assert page.url == f"{shared_server.url}/sse/room?user=ada&room={room_name}"
    expect(page.locator("h1")).to_have_text(f"#{room_name}")
    expect(page.locator(".me")).to_have_text("ada")
    expect(page.locator(".transport")).to_have_text("server-sent events")
    expect(page.locator("body")).to_have_attribute("data-transport", "sse")
    expect(page.get_by_role("link", name="Leave")).to_have_attribute("href", "/")
    assert [(r["type"], r["user"], r["text"]) for r in ada.rows()] == [("join", "you", "joined")]


def test_the_sse_page_shows_streamed_events_as_text_once_each_and_resumes_after_the_newest(
        shared_server, people, room_name):
    ada = people("ada", bypass_csp=True)  # only the page's own escaping stands between markup and the DOM
    ada.context.add_init_script(RAN_SPY)
    ada.allowed = STREAM_REFUSED
    cyd = "<i onmouseover=ran(4)>cyd</i>"
    joined, said = sse_event(1, "join", "ada"), sse_event(2, "message", "bob", PAYLOAD)
    requested = fake_stream(
        ada.page,
        503,                                         # refused: the page opens a new EventSource
        [joined, said],                              # ends: the browser reconnects by itself
        [said, sse_event(3, "message", cyd, "hi")],  # a resumed stream may repeat an event
        503,
        [sse_event(4, "leave", "bob")],
        503)                                         # from here on
    ada.page.goto(f"{shared_server.url}/sse/room?user=ada&room={room_name}")
    ada.transport = "sse"
    ada.expect_event("ada", "joined")
    ada.expect_event("bob", PAYLOAD)
    ada.expect_event(cyd, "hi")
    ada.expect_event("bob", "left", timeout=10_000)
    assert [r["id"] for r in ada.rows()] == [1, 2, 3, 4]
    expect(ada.page.locator("#state")).to_have_text("disconnected, reconnecting…")
    for _ in range(50):  # the next EventSource comes 0.5 s later
        if len(requested) >= 7:
            break
        ada.page.wait_for_timeout(100)

    # The browser's own reconnections ask for the same URL (and send Last-Event-ID);
    # after an error answer the page asks for the events after the newest it shows.
    received = [int(re.search(r"lastReceived=(\d+)", url)[1]) for url in requested]
    assert received[:7] == [0, 0, 0, 0, 3, 3, 4]
    assert ada.page.evaluate("window.__ran") == []
    assert ada.page.locator("body img, body script, body i, #messages span *").count() == 0


def test_the_sse_page_posts_messages_and_keeps_a_refused_one_in_the_box_with_the_reason(
        shared_redis, start_server, people, room_name):
    server = start_server(shared_redis.url, CHAT_RATE_BURST=1, CHAT_RATE_PER_SEC=0.001)
    ada = people("ada")
    ada.allowed = re.compile(r"\b429\b")  # Chromium logs the refused POST
    fake_stream(ada.page, [sse_event(1, "join", "ada")])
    ada.join(server, room_name, "sse")
    box = ada.page.locator("#message")
    ada.say("first")
    expect(box).to_have_value("")
    ada.say("second")
    expect(ada.page.locator("#notice")).to_contain_text("too many messages")
    expect(box).to_have_value("second")
    assert [(e["user"], e["text"]) for e in server.archive(room_name)] == [("ada", "first")]


def test_the_welcome_page_fits_a_phone_with_its_four_buttons(shared_server, people):
    ada = people("ada", viewport=PHONE, is_mobile=True, has_touch=True)
    page = ada.page
    page.goto(shared_server.url + "/")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    buttons = page.locator(".transports button")
    expect(buttons).to_have_count(4)
    for i in range(4):
        expect(buttons.nth(i)).to_be_in_viewport(ratio=1)
    assert buttons.evaluate_all("els => els.filter(e => e.scrollWidth > e.clientWidth).length") == 0


def test_an_sse_page_and_a_websocket_page_see_each_others_messages_joins_and_leaves(
        shared_server, people, room_name):
    ada = people("ada").join(shared_server, room_name, "websocket")
    bob = people("bob").join(shared_server, room_name, "sse")
    for reader in (ada, bob):
        reader.expect_event("ada", "joined")
        reader.expect_event("bob", "joined")
    ada.say("hello from a WebSocket")
    bob.say("hello from server-sent events")
    for reader in (ada, bob):
        reader.expect_event("ada", "hello from a WebSocket")
        reader.expect_event("bob", "hello from server-sent events")
    ids = [row["id"] for row in ada.rows()]
    assert ids == sorted(set(ids)) and len(ids) == 4
    assert [row["id"] for row in bob.rows()] == ids

    bob.leave(shared_server)  # the page goes away, the stream ends: the server posts the leave
    ada.expect_event("bob", "left")
    ada.leave(shared_server)


def test_an_sse_page_reconnects_after_a_server_restart_and_misses_nothing(
        shared_redis, shared_server, start_server, people, room_name):
    server = start_server(shared_redis.url)
    ada = people("ada").join(server, room_name, "sse")
    ada.allowed = NETWORK_ERROR  # the server it talks to is killed, on purpose
    expect_state([ada], "connected")

    # The browser reconnects by itself, sending the Last-Event-ID it has.
    server, missed = kill_and_restart(server, [ada], shared_server, start_server, room_name)

    # A graceful restart: the server ends the stream, the browser comes back.
    server.stop()
    expect_state([ada], "disconnected")
    missed.append(post(shared_server, room_name, "during the second restart"))
    start_server(shared_redis.url, port=server.port)
    ada.expect_event("poster", missed[-1]["text"], timeout=20_000)
    after = post(shared_server, room_name, "after the restarts")
    ada.expect_event("poster", after["text"])
    shows_once_in_order(ada, missed + [after])


# --- 11. the id chain: a gap is shown, not hidden -------------------------------

@pytest.mark.parametrize("transport", list(TRANSPORTS))
def test_a_page_says_where_earlier_messages_may_be_missing(
        redis_server, start_server, people, room_name, transport):
    server = start_server(redis_server.url)
    ada = people("ada").join(server, room_name, transport)
    before = post(server, room_name, "before Redis lost its data")
    ada.expect_event("poster", before["text"])
    gap = ada.page.locator("#messages > li.gap")
    expect(gap).to_have_count(0)  # a whole history: no note
    # the page's server answers 503 while Redis is away (and the page retries)
    ada.allowed = re.compile(NETWORK_ERROR.pattern + r"|status of 503")
    redis_server.restart()  # empty: the next event's prev is 0, not the newest shown
    after = wait_until(lambda: try_post(server, room_name, "after"), timeout=15,
                       message="posting again")
    ada.expect_event("poster", after["text"], timeout=20_000)
    expect(gap).to_have_count(1)
    expect(gap).to_have_text("Earlier messages may be missing here.")
    # the note stands just before the first event after the gap
    assert ada.page.evaluate(
        "() => document.querySelector('#messages > li.gap').nextElementSibling.dataset.id"
    ) == str(after["id"])
    following = post(server, room_name, "and the chain goes on")
    ada.expect_event("poster", following["text"])
    expect(gap).to_have_count(1)


def try_post(server, room, text):
    """Posts a message; the event, or None while the server cannot post."""
    response = requests.post(f"{server.url}/longpolling/room/messages",
                             params={"user": "poster", "room": room}, data={"message": text},
                             timeout=5)
    return response.json() if response.status_code == 201 else None
