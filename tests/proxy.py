"""A TCP proxy in front of redis-server that holds chosen commands back.

A server pointed at `RedisProxy.url` reaches Redis through it on real sockets.
Replies pass untouched. Each command a client sends (a RESP array) passes at
once, unless `hold`'s predicate picks it: then it waits in `held`, oldest
first, until `release` sends it on to Redis on its own connection. The
commands behind a held one flow on (the hub PINGs its pub/sub connection and
replaces one silent for PUBSUB_SILENCE, so holding the whole connection would
end it). This is how a test decides when Redis carries out a SUBSCRIBE.
"""

import socket
import threading

from tests.servers import free_port


def parse_command(buffer):
    """(length, [arguments]) of the command at the start of buffer; None while incomplete.

    Clients send arrays of bulk strings (`*2\\r\\n$4\\r\\nPING\\r\\n...`); a line
    not starting with `*` is an inline command.
    """
    line_end = buffer.find(b"\r\n")
    if line_end < 0:
        return None
    if not buffer.startswith(b"*"):
        return line_end + 2, buffer[:line_end].split()
    position, arguments = line_end + 2, []
    for _ in range(int(buffer[1:line_end])):
        line_end = buffer.find(b"\r\n", position)
        if line_end < 0:
            return None
        start = line_end + 2
        end = start + int(buffer[position + 1:line_end])  # after `$<length>`
        if len(buffer) < end + 2:
            return None
        arguments.append(buffer[start:end])
        position = end + 2
    return position, arguments


class Link:
    """One client's connection and the proxy's connection to Redis for it."""

    def __init__(self, client, upstream):
        self.client = client
        self.upstream = upstream
        self._lock = threading.Lock()  # the reader and `release` both send upstream

    def send_upstream(self, data):
        with self._lock:
            self.upstream.sendall(data)

    def close(self):
        for sock in (self.client, self.upstream):
            try:
                sock.close()
            except OSError:
                pass


class RedisProxy:
    """Forwards 127.0.0.1:`port` to Redis on `upstream_port`, holding what `hold` picks."""

    def __init__(self, upstream_port):
        self.upstream_port = upstream_port
        self.port = free_port()
        self.held = []            # (Link, command bytes, arguments), oldest first
        self._picks = lambda arguments: False
        self._links = []
        self._server = None

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self):
        self._server = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def hold(self, picks):
        """From now on, commands for which picks(arguments) is true wait for `release`."""
        self._picks = picks

    def release(self):
        """Sends the oldest held command on to Redis."""
        link, command, _ = self.held.pop(0)
        link.send_upstream(command)

    def stop(self):
        self._server.close()
        for link in self._links:
            link.close()

    def _accept(self):
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            link = Link(client, socket.create_connection(("127.0.0.1", self.upstream_port)))
            self._links.append(link)
            threading.Thread(target=self._replies, args=(link,), daemon=True).start()
            threading.Thread(target=self._commands, args=(link,), daemon=True).start()

    def _replies(self, link):
        try:
            while data := link.upstream.recv(65536):
                link.client.sendall(data)
        except OSError:
            pass
        link.close()

    def _commands(self, link):
        buffer = b""
        try:
            while data := link.client.recv(65536):
                buffer += data
                while (parsed := parse_command(buffer)) is not None:
                    length, arguments = parsed
                    command, buffer = buffer[:length], buffer[length:]
                    if self._picks(arguments):
                        self.held.append((link, command, arguments))
                    else:
                        link.send_upstream(command)
        except OSError:
            pass
        link.close()
