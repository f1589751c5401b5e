// Active refresh: every 5 s the page fetches itself and appends the events it
// does not show yet, and fetches who is here (the form posts as a plain HTML form).
"use strict";

(() => {
  const PERIOD = 5000;

  async function refresh() {
    if (Chat.stopped.aborted) return;
    try {
      const response = await fetch(location.href, { cache: "no-store", signal: Chat.stopped });
      if (await Chat.refused(response)) return;  // token mode: the session has ended
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const page = new DOMParser().parseFromString(await response.text(), "text/html");
      const newest = Chat.lastId();
      Chat.appendNodes([...page.querySelectorAll("#messages > li.message")]
        .filter((li) => Number(li.dataset.id) > newest)
        .map((li) => document.importNode(li, true)));
      Chat.setState("connected", "refreshing every 5 s");
      Chat.showPresence();
    } catch (err) {
      if (Chat.stopped.aborted) return;
      Chat.setState("disconnected", "disconnected, retrying…");
    }
    setTimeout(refresh, PERIOD);
  }

  setTimeout(refresh, PERIOD);
})();
