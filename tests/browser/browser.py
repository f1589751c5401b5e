"""Debian's headless Chromium, driven by Playwright, for the browser tests and
the screenshots: how to launch it, and a Person who uses the chat pages.

Playwright never downloads a browser here: it is always given /usr/bin/chromium.
"""

import os
import re

import requests
from playwright.sync_api import expect

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
DESKTOP = {"width": 1000, "height": 700}
PHONE = {"width": 390, "height": 844}

# transport -> the welcome page's button, the room page's path, how soon (ms) a
# new event shows there: pushed at once, or at the next 5 s refresh.
TRANSPORTS = {
    "websocket": ("WebSocket", "/websocket/room", 2_000),
    "longpolling": ("Long polling", "/longpolling/room", 2_000),
    "refresh": ("Active refresh", "/refresh/room", 7_000),
    "sse": ("Server-sent events", "/sse/room", 2_000),
}

# What Chromium logs when a server it talks to is gone (the restart test only).
NETWORK_ERROR = re.compile(r"^(Failed to load resource: net::ERR_|WebSocket connection to .* failed)")


def have_chromium():
    return os.access(CHROMIUM, os.X_OK)


def launch(playwright):
    """Debian's Chromium, headless."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def post(server, room, text, user="poster"):
    """Posts a message through the HTTP API, as a non-browser client would; returns the event."""
    response = requests.post(f"{server.url}/longpolling/room/messages",
                             params={"user": user, "room": room}, data={"message": text}, timeout=5)
    assert response.status_code == 201, response.text
    return response.json()


def exactly(selector, text):
    """A CSS selector for `selector` elements whose whole text is `text`."""
    quoted = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\a ")
    return f'{selector}:text-is("{quoted}")'


class Person:
    """Someone at their own browser: a fresh context and page, whose console
    errors and uncaught page errors are collected in `errors`."""

    def __init__(self, browser, name, viewport=None, **context_options):
        self.name = name
        self.transport = None
        self.context = browser.new_context(viewport=viewport or DESKTOP, **context_options)
        self.page = self.context.new_page()
        self.errors = []
        self.allowed = None  # a pattern of errors this person's pages may log
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda exc: self.errors.append(f"page error: {exc}"))

    def _console(self, message):
        if message.type == "error":
            self.errors.append(f"{message.text} ({message.location.get('url')})")

    def unexpected_errors(self):
        """The errors logged but for those matching `allowed`, each with the person's name."""
        return [f"{self.name}: {error}" for error in self.errors
                if not (self.allowed and self.allowed.search(error))]

    def close(self):
        self.context.close()

    # --- going places ----------------------------------------------------

    def join(self, server, room, transport):
        """From the welcome page: types the nickname and the room, presses the
        transport's button, and waits for the room page to show this person's join."""
        self.page.goto(server.url + "/")
        self.page.locator("#user").fill(self.name)
        self.page.locator("#room").fill(room)
        self.page.get_by_role("button", name=TRANSPORTS[transport][0], exact=True).click()
        return self.arrive(server, transport)

    def arrive(self, server, transport):
        """Waits for the transport's room page, showing this person's join."""
        path = TRANSPORTS[transport][1]
        self.page.wait_for_url(re.compile(rf"^{re.escape(server.url + path)}\?"))
        self.transport = transport
        self.expect_event(self.name, "joined")
        return self

    def leave(self, server):
        self.page.get_by_role("link", name="Leave").click()
        self.page.wait_for_url(server.url + "/")

    # --- what the page shows ---------------------------------------------

    @property
    def messages(self):
        """The message list's entries, one per event."""
        return self.page.locator("#messages > li.message")

    def shown_name(self, user):
        return "you" if user == self.name else user

    def entry(self, user, text):
        """The entries showing `user` saying `text` (or "joined"/"left"), both exactly."""
        page = self.page
        return (self.messages
                .filter(has=page.locator(exactly(".user", self.shown_name(user))))
                .filter(has=page.locator(exactly(".text", text))))

    def expect_event(self, user, text, timeout=None):
        """Waits until the page shows `user`'s `text` exactly once, marked
        `mine` (and named "you") if and only if this person wrote it."""
        entry = self.entry(user, text)
        expect(entry).to_have_count(1, timeout=timeout or TRANSPORTS[self.transport][2])
        mine = re.compile(r"\bmine\b")
        if user == self.name:
            expect(entry).to_have_class(mine)
        else:
            expect(entry).not_to_have_class(mine)

    def rows(self):
        """Every entry as a dict: id, type, user (as shown) and text."""
        return self.messages.evaluate_all("""els => els.map(e => ({
            id: Number(e.dataset.id),
            type: [...e.classList].find(c => c.startsWith("event-")).slice(6),
            user: e.querySelector(".user").textContent,
            text: e.querySelector(".text").textContent}))""")

    # --- doing things ----------------------------------------------------

    def say(self, text):
        """Types `text` into the message box and presses Enter."""
        box = self.page.locator("#message")
        box.fill(text)
        box.press("Enter")
