// WebSocket transport: events are pushed; after a drop the page reconnects by
// itself with lastReceived, so it shows everything archived meanwhile, once.
// A close with 1008 (its token expired, or the server disconnected the user)
// ends the session instead.
"use strict";

(() => {
  let socket = null;
  let unconfirmed = null;  // the last message sent, until it comes back or is refused

  function connect() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const last = Chat.lastId();
    let url = `${scheme}//${location.host}/websocket/room/socket?${Chat.query}`;
    if (last) url += `&lastReceived=${last}`;
    Chat.setState("connecting", "connecting…");
    socket = new WebSocket(url);
    let opened = false;
    socket.onopen = () => {
      opened = true;
      Chat.setState("connected", "connected");
      Chat.backoff.reset();
    };
    socket.onmessage = (message) => {
      const event = JSON.parse(message.data);
      if (event.type === "error") {  // the server refused a message: it was not posted
        Chat.showNotice(event.text);
        if (unconfirmed !== null) Chat.restoreDraft(unconfirmed);
        unconfirmed = null;
        return;
      }
      if (event.type === "message" && event.user === Chat.me && event.text === unconfirmed) unconfirmed = null;
      Chat.append([event]);
    };
    socket.onclose = async (event) => {
      if (event.code === 1008) {
        Chat.endSession(event.reason === "token expired" ? Chat.EXPIRED : Chat.DISCONNECTED);
        return;
      }
      Chat.setState("disconnected", "disconnected, reconnecting…");
      // A handshake refused (its token, in token mode) looks like any failure.
      if (!opened && !(await Chat.sessionLives())) return;
      setTimeout(connect, Chat.backoff.next());
    };
  }

  Chat.onSend(async (text) => {
    if (!socket || socket.readyState !== WebSocket.OPEN) throw new Error("Not connected: wait a moment and send again.");
    socket.send(text);
    unconfirmed = text;
  });
  connect();
})();
