// Server-sent events transport: the server pushes events down one long HTTP
// response (an EventSource); messages are posted, as on the long-polling page.
"use strict";

(() => {
  let source = null;

  function connect() {
    Chat.setState("connecting", "connecting…");
    source = new EventSource(`/sse/room/events?${Chat.query}&lastReceived=${Chat.lastId()}`);
    source.onopen = () => {
      Chat.setState("connected", "connected");
      Chat.backoff.reset();
    };
    source.onmessage = (message) => Chat.append([JSON.parse(message.data)]);
    // After a drop the browser reconnects by itself, sending Last-Event-ID; but
    // an error answer (an HTTP status) closes the EventSource for good: one
    // that refused the token (token mode: the stream ended when it expired)
    // ends the session, any other is retried.
    source.onerror = async () => {
      Chat.setState("disconnected", "disconnected, reconnecting…");
      if (source.readyState !== EventSource.CLOSED) return;
      if (await Chat.sessionLives()) setTimeout(connect, Chat.backoff.next());
    };
  }

  Chat.onSend(Chat.post);
  connect();
})();
