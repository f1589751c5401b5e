"""Token mode in real headless Chromium: pages opened with a token chat across
transports (every request and socket they make must carry it, or the server
refuses them), and a page whose token expires says that its session has ended."""

import re
import time

import pytest
from playwright.sync_api import expect

from tests.browser.browser import TRANSPORTS
from tests.conftest import AUTH_KEY, token
from tests.servers import Server

# The first URL of each transport, as the application in front of the chat links to it.
ENTRY = {"websocket": "/websocket/room", "longpolling": "/longpolling", "sse": "/sse/room",
         "refresh": "/refresh"}
# What Chromium logs when the server refuses an expired token (401).
REFUSED = re.compile(r"status of 401|EventSource|WebSocket connection to .* failed")


@pytest.fixture(scope="module")
def token_server(shared_redis, tmp_path_factory):
    """One gunicorn (2 workers) in token mode (HS256) on shared_redis, for the module."""
    server = Server(shared_redis.url, workers=2, log_dir=tmp_path_factory.mktemp("logs"),
                    CHAT_AUTH_KEY=AUTH_KEY).start()
    yield server
    server.stop()


def open_with_token(person, server, room, transport, given):
    """The person follows a link to the room carrying their token (no user name:
    the token's), and waits for the room page to show their join."""
    person.page.goto(f"{server.url}{ENTRY[transport]}?room={room}&token={given}")
    return person.arrive(server, transport)


def test_pages_opened_with_a_token_chat_across_transports(token_server, people, room_name):
    transports = {"ada": "websocket", "bob": "longpolling", "cyd": "sse", "dan": "refresh"}
    tokens = {name: token(name, rooms=[room_name], exp=int(time.time()) + 600)
              for name in transports}
    everyone = [open_with_token(people(name), token_server, room_name, transport, tokens[name])
                for name, transport in transports.items()]
    for person in everyone:
        person.say(f"hello from {person.transport}")
    for person in everyone:
        for reader in everyone:
            reader.expect_event(person.name, f"hello from {person.transport}",
                                timeout=TRANSPORTS[reader.transport][2])
    for person in everyone:  # the presence list is fetched with the token too
        expect(person.page.locator("#presence li")).to_have_count(4)
        assert person.page.locator("#ended").is_hidden()

    bob, ada = everyone[1], everyone[0]
    bob.leave(token_server)  # the leave link carries the token
    ada.expect_event("bob", "left")
    log = token_server.log()
    assert all(given not in log for given in tokens.values())


@pytest.mark.parametrize("transport", ["websocket", "sse", "longpolling", "refresh"])
def test_a_page_whose_token_expires_says_the_session_has_expired(
        token_server, people, room_name, transport):
    ada = people("ada")
    ada.allowed = REFUSED  # the refusals that tell the page its token expired
    given = token("ada", exp=int(time.time()) + 4)
    open_with_token(ada, token_server, room_name, transport, given)
    ended = ada.page.locator("#ended")
    expect(ended).to_be_visible(timeout=15_000)
    expect(ended).to_contain_text("Your session has expired")
    expect(ended.get_by_role("link", name="Back to the start")).to_have_attribute("href", "/")
    expect(ada.page.locator("#state")).to_have_text("session ended")
    expect(ada.page.locator("#message")).to_be_disabled()
    assert given not in token_server.log()
