// Shared by the three room pages: events rendered as text only (textContent),
// gorilla's appendLog scrolling, the connection state, notices, the send form.
"use strict";

const Chat = (() => {
  const body = document.body;
  const me = body.dataset.user;
  const room = body.dataset.room;
  const log = document.getElementById("messages");
  const state = document.getElementById("state");
  const notice = document.getElementById("notice");
  const form = document.getElementById("send");
  const input = document.getElementById("message");
  const people = document.getElementById("presence");
  const leaveLink = document.querySelector(".leave");
  const headcount = document.getElementById("headcount");
  const query = `room=${encodeURIComponent(room)}&user=${encodeURIComponent(me)}`;

  function clock(ts) {
    return new Date(ts).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  function span(className, text) {
    const el = document.createElement("span");
    el.className = className;
    el.textContent = text;
    return el;
  }

  function render(event) {
    const li = document.createElement("li");
    li.className = `message event-${event.type}` + (event.user === me ? " mine" : "");
    li.dataset.id = event.id;
    li.dataset.user = event.user;
    const what = event.type === "message" ? event.text : event.type === "join" ? "joined" : "left";
    const time = document.createElement("time");
    time.dataset.ts = event.ts;
    time.textContent = clock(event.ts);
    li.append(span("user", event.user === me ? "you" : event.user), span("text", what), time);
    return li;
  }

  // The view follows new messages only if the reader is at the bottom.
  function atBottom() {
    return log.scrollTop >= log.scrollHeight - log.clientHeight - 2;
  }

  function appendNodes(nodes) {
    const follow = atBottom();
    for (const node of nodes) log.appendChild(node);
    if (follow) log.scrollTop = log.scrollHeight - log.clientHeight;
  }

  function lastId() {
    const last = log.lastElementChild;
    return last ? Number(last.dataset.id) : 0;
  }

  const listeners = [];

  // Appends the events newer than the last one shown; returns them.
  function append(events) {
    const newest = lastId();
    const fresh = events.filter((e) => e.id > newest);
    if (fresh.length) {
      appendNodes(fresh.map(render));
      for (const listener of listeners) listener(fresh);
    }
    return fresh;
  }

  function setState(kind, text) {
    if (kind === "connected" && !state.classList.contains("connected")) showPresenceSoon();
    state.className = `state ${kind}`;
    state.textContent = text;
  }

  // Who is here: fetched on load, after a reconnect, and on every join or leave.
  async function showPresence() {
    try {
      const response = await fetch(`/presence?room=${encodeURIComponent(room)}`, { cache: "no-store" });
      if (!response.ok) return;
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

  listeners.push((events) => {
    if (events.some((e) => e.type !== "message")) showPresenceSoon();
  });

  function showNotice(text) {
    notice.textContent = text;
    notice.hidden = false;
    clearTimeout(showNotice.timer);
    showNotice.timer = setTimeout(() => { notice.hidden = true; }, 6000);
  }

  // send(text) returns a promise; the input is cleared once it resolves.
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

  // Puts a message the server refused back in the box, unless the reader has typed anew.
  function restoreDraft(text) {
    if (!input.value) input.value = text;
  }

  function sleep(ms) {
    return new Promise((resolve) => setTimeout(resolve, ms));
  }

  // Once the reader clicks Leave, the page stops talking to the server: a poll
  // or refresh sent after the leave would make them present again.
  const leaving = new AbortController();
  leaveLink.addEventListener("click", () => leaving.abort());

  for (const time of log.querySelectorAll("time[data-ts]")) time.textContent = clock(Number(time.dataset.ts));
  log.scrollTop = log.scrollHeight;
  showPresenceSoon();

  return { me, room, query, log, append, appendNodes, lastId, clock, setState, showNotice,
           onSend, restoreDraft, sleep, showPresence, leaving: leaving.signal, onEvents: (f) => listeners.push(f) };
})();
