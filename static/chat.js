// Shared by the four room pages: the message list (events shown as text only),
// gorilla's appendLog scrolling, the connection state, who is here, notices,
// the send form, the wait before reconnecting, and the end of a session. The
// transport scripts use Chat.
"use strict";

const Chat = (() => {
  const me = document.body.dataset.user;
  const room = document.body.dataset.room;
  // Token mode: the page was opened with ?token=…; every request and socket
  // it makes carries that token (the server puts it in the form and links).
  const token = new URLSearchParams(location.search).get("token");
  const auth = token ? `&token=${encodeURIComponent(token)}` : "";
  const query = `room=${encodeURIComponent(room)}&user=${encodeURIComponent(me)}${auth}`;
  const presenceUrl = `/presence?room=${encodeURIComponent(room)}${auth}`;
  const log = document.getElementById("messages");
  const emptyEntry = document.getElementById("event-template").content.firstElementChild;
  const state = document.getElementById("state");
  const notice = document.getElementById("notice");
  const form = document.getElementById("send");
  const input = document.getElementById("message");
  const people = document.getElementById("presence");
  const headcount = document.getElementById("headcount");
  const ended = document.getElementById("ended");

  // The page renders times in UTC; the reader sees their own time zone.
  function showLocalTime(time) {
    time.textContent = new Date(Number(time.dataset.ts))
      .toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  // An event's entry: a copy of the empty one (templates/event.html), filled in as text.
  function render(event) {
    const li = emptyEntry.cloneNode(true);
    const mine = event.user === me;
    li.classList.add(`event-${event.type}`);
    li.classList.toggle("mine", mine);
    li.dataset.id = event.id;
    li.dataset.prev = event.prev;
    li.dataset.user = event.user;
    li.querySelector(".user").textContent = mine ? "you" : event.user;
    li.querySelector(".text").textContent =
      event.type === "message" ? event.text : event.type === "join" ? "joined" : "left";
    li.querySelector("time").dataset.ts = event.ts;
    return li;
  }

  // The view follows new messages only if the reader is at the bottom.
  function atBottom() {
    return log.scrollTop >= log.scrollHeight - log.clientHeight - 2;
  }

  function appendNodes(nodes) {
    const follow = atBottom();
    for (const node of nodes) {
      node.querySelectorAll("time[data-ts]").forEach(showLocalTime);
      if (followsAGap(node)) log.appendChild(gapNote());
      log.appendChild(node);
    }
    if (follow) log.scrollTop = log.scrollHeight - log.clientHeight;
  }

  // Every event names the one before it (prev). One that does not follow the
  // newest shown comes after events no longer archived (trimmed, or lost with
  // the server's data): the page says so there, instead of hiding the gap.
  function followsAGap(node) {
    const newest = lastId();
    return newest > 0 && Number(node.dataset.prev) !== newest;
  }

  function gapNote() {
    const li = document.createElement("li");
    li.className = "gap";
    li.textContent = "Earlier messages may be missing here.";
    return li;
  }

  function lastId() {
    const last = log.lastElementChild;  // a gap note is always followed by an event
    return last ? Number(last.dataset.id) : 0;
  }

  // Appends the events newer than the last one shown.
  function append(events) {
    const newest = lastId();
    const fresh = events.filter((e) => e.id > newest);
    appendNodes(fresh.map(render));
    if (fresh.some((e) => e.type !== "message")) showPresenceSoon();
  }

  function setState(kind, text) {
    if (state.classList.contains("ended")) return;  // the session is over for good
    if (kind === "connected" && !state.classList.contains("connected")) showPresenceSoon();
    state.className = `state ${kind}`;
    state.textContent = text;
  }

  // Who is here: fetched on load, after a reconnect, and on every join or leave.
  async function showPresence() {
    try {
      const response = await fetch(presenceUrl, { cache: "no-store" });
      if (await refused(response) || !response.ok) return;
      const { users } = await response.json();
      people.replaceChildren(...users.map((user) => {
        const li = document.createElement("li");
        li.textContent = user === me ? `${user} (you)` : user;
        if (user === me) li.className = "self";
        return li;
      }));
      headcount.textContent = ` · ${users.length} here`;
    } catch (err) {
      // the connection state already says the server is away
    }
  }

  function showPresenceSoon() {
    clearTimeout(showPresenceSoon.timer);
    showPresenceSoon.timer = setTimeout(showPresence, 150);
  }

  function showNotice(text) {
    notice.textContent = text;
    notice.hidden = false;
    clearTimeout(showNotice.timer);
    showNotice.timer = setTimeout(() => { notice.hidden = true; }, 6000);
  }

  // send(text) returns a promise; the input is cleared once it resolves, and
  // keeps the text if it rejects (the reason is shown).
  function onSend(send) {
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const text = input.value.trim();
      if (!text) return;
      try {
        await send(text);
        input.value = "";
      } catch (err) {
        showNotice(err.message);
      }
      input.focus();
    });
  }

  // Posts a message to the form's URL; rejects with the server's reason if refused.
  async function post(text) {
    const response = await fetch(form.action, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ message: text }),
    });
    if (await refused(response)) throw new Error("Not sent: the session has ended.");
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      throw new Error(body.error || `Not sent (HTTP ${response.status}).`);
    }
  }

  // Puts a message the server refused back in the box, unless the reader has typed anew.
  function restoreDraft(text) {
    if (!input.value) input.value = text;
  }

  // How long to wait before reconnecting: 0.5 s after a failure, twice as
  // long after each further one, 8 s at most; reset() once a connection works.
  let delay = 500;
  const backoff = {
    next() {
      const wait = delay;
      delay = Math.min(delay * 2, 8000);
      return wait;
    },
    reset() { delay = 500; },
  };

  // Once the reader clicks Leave, or the session ends, the page stops talking
  // to the server: a poll or refresh sent after the leave would make them
  // present again.
  const stopping = new AbortController();
  document.querySelector(".leave").addEventListener("click", () => stopping.abort());

  // Token mode: a token the server refuses (401: it expired; 403: it does not
  // allow this room) ends the session. The page cannot get a new token: it
  // stops, says why, and links back to the start.
  const EXPIRED = "Your session has expired. This page cannot start a new one: "
    + "open the chat again from the application that sent you here.";
  const DISCONNECTED = "The server has disconnected you from this room.";

  function endSession(text) {
    if (stopping.signal.aborted) return;
    stopping.abort();
    state.className = "state ended";
    state.textContent = "session ended";
    ended.querySelector(".why").textContent = text;
    ended.hidden = false;
    form.querySelectorAll("input, button").forEach((el) => { el.disabled = true; });
  }

  // Whether response is a refusal of the token; if so the session ends.
  async function refused(response) {
    if (!token || (response.status !== 401 && response.status !== 403)) return false;
    const body = await response.clone().json().catch(() => ({}));
    endSession(response.status === 401 ? EXPIRED : `This session may not go on: ${body.error || "refused"}.`);
    return true;
  }

  // Whether the server still takes the page's token. A WebSocket or an
  // EventSource that fails cannot tell why: this asks, before trying again.
  async function sessionLives() {
    if (!token) return true;
    try {
      return !(await refused(await fetch(presenceUrl, { cache: "no-store" })));
    } catch (err) {
      return true;  // the server is away: keep trying
    }
  }

  log.querySelectorAll("time[data-ts]").forEach(showLocalTime);
  log.scrollTop = log.scrollHeight;
  showPresenceSoon();

  return { me, query, lastId, append, appendNodes, setState, showPresence, showNotice,
           onSend, post, restoreDraft, backoff, stopped: stopping.signal, endSession,
           refused, sessionLives, EXPIRED, DISCONNECTED };
})();
