// Long-polling transport: one request at a time asks for the events after the
// last one shown; the server answers when there are some (or [] after a while).
"use strict";

(() => {
  const url = `/longpolling/room/messages?${Chat.query}`;

  // A poll is answered only when there is news, which may take a while: so
  // the page first asks /healthz whether the server answers, and says
  // "connected" as soon as it does (at the start, and after every failure).
  async function reachable() {
    const response = await fetch("/healthz", { cache: "no-store" });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
  }

  async function poll() {
    let failed = true;
    while (!Chat.stopped.aborted) {
      try {
        if (failed) {
          await reachable();
          Chat.setState("connected", "connected");
          failed = false;
        }
        const response = await fetch(`${url}&lastReceived=${Chat.lastId()}`,
                                     { cache: "no-store", signal: Chat.stopped });
        if (await Chat.refused(response)) return;  // token mode: the session has ended
        if (!response.ok) throw new Error(`HTTP ${response.status}`);
        Chat.backoff.reset();
        Chat.append(await response.json());
      } catch (err) {
        if (Chat.stopped.aborted) return;
        failed = true;
        Chat.setState("disconnected", "disconnected, reconnecting…");
        await new Promise((resolve) => setTimeout(resolve, Chat.backoff.next()));
      }
    }
  }

  Chat.onSend(Chat.post);
  poll();
})();
