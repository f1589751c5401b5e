"""Screenshots of the chat as people see it: `make screenshots`, or
`.venv/bin/python -m tests.browser.screenshots`, writes docs/*.png.

It starts a real gunicorn (on the embedded store: no Redis needed), lets a few
people talk in one room through the four transports in headless Chromium
(someone joins and leaves too), and photographs the welcome page, each room
page, and the WebSocket page on a phone-sized screen. It fails if any page
logged an error.
"""

import sys
import tempfile

from playwright.sync_api import sync_playwright

from tests.browser.browser import PHONE, TRANSPORTS, Person, have_chromium, launch
from tests.servers import PROJECT, Server

DOCS = PROJECT / "docs"
ROOM = "design-review"

# (who, what they say), in order; each person's transport is in PEOPLE.
PEOPLE = {"ada": "websocket", "bob": "longpolling", "cyd": "refresh", "fay": "sse"}
CONVERSATION = [
    ("ada", "Morning all! Did the release go out?"),
    ("bob", "Yes, at 9:40. I'm on long polling and everything arrived."),
    ("cyd", "Same here: my page refreshes every five seconds."),
    ("fay", "And mine is a server-sent event stream: same messages, same order."),
    ("dan", "Just dropping by: the new build looks great, très bien."),
    ("ada", "A longer message, to see how a bubble wraps when someone has a lot to say: "
            "the archive keeps the newest hundred events of each room, so anyone who "
            "joins late still sees what was said before."),
    ("bob", "<b>Markup</b> stays text, by the way."),
    ("eve", "Hello from my phone!"),
]


def main():
    if not have_chromium():
        sys.exit("chromium is not installed (apt-get install chromium)")
    DOCS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as logs:
        server = Server(log_dir=logs).start()
        try:
            with sync_playwright() as playwright:
                browser = launch(playwright)
                try:
                    errors = shoot(browser, server)
                finally:
                    browser.close()
        finally:
            server.stop()
    if errors:
        sys.exit("the pages logged errors:\n" + "\n".join(errors))
    print(f"screenshots written to {DOCS}")


def shoot(browser, server):
    """Plays the conversation, saves the screenshots; returns the pages' errors."""
    welcome = Person(browser, "ada")
    welcome.page.goto(server.url + "/")
    welcome.page.locator("#user").fill("ada")
    welcome.page.locator("#room").fill(ROOM)
    welcome.page.screenshot(path=DOCS / "welcome.png")

    people = {name: Person(browser, name).join(server, ROOM, transport)
              for name, transport in PEOPLE.items()}
    dan = Person(browser, "dan").join(server, ROOM, "websocket")
    eve = None
    for name, text in CONVERSATION:
        if name == "eve":
            eve = people["eve"] = Person(browser, "eve", viewport=PHONE).join(server, ROOM, "websocket")
        speaker = dan if name == "dan" else people[name]
        speaker.say(text)
        speaker.expect_event(name, text)
        if name == "dan":
            dan.leave(server)

    last = CONVERSATION[-1]
    for person in people.values():
        person.expect_event(*last)
        person.page.locator("#message").focus()
    for name, transport in PEOPLE.items():
        people[name].page.screenshot(path=DOCS / f"{transport}.png")
    eve.page.screenshot(path=DOCS / "phone.png")

    everyone = [welcome, dan, *people.values()]
    errors = [error for person in everyone for error in person.unexpected_errors()]
    for person in everyone:
        person.close()
    return errors


if __name__ == "__main__":
    assert set(PEOPLE.values()) == set(TRANSPORTS)
    main()
