// Active refresh: every 5 s the page fetches itself and appends the events it
// does not show yet, and fetches who is here (the form posts as a plain HTML form).
"use strict";

(() => {
  const PERIOD = 5000;

  async function refresh() {
    if (Chat.leaving.aborted) return;
    try {
      const response = await fetch(location.href, { cache: "no-store", signal: Chat.leaving });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const page = new DOMParser().parseFromString(await response.text(), "text/html");
      const newest = Chat.lastId();
      Chat.appendNodes([...page.querySelectorAll("#messages > li.message")]
        .filter((li) => Number(li.dataset.id) > newest)
        .map((li) => document.importNode(li, true)));
      Chat.setState("connected", "refreshing every 5 s");
      Chat.showPresence();
    } catch (err) {
      if (Chat.leaving.aborted) return;
      Chat.setState("disconnected", "disconnected, retrying…");
    }
    setTimeout(refresh, PERIOD);
  }

  setTimeout(refresh, PERIOD);
})();
