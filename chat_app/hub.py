"""This process's hub: its one pub/sub connection, and the fan-out to its listeners.

A post runs the Lua script (room.py), which publishes "<prev> <id> <event>"
on the room's channel. Each process's hub reads its one pub/sub connection,
takes every message already buffered (a batch), and for each room in it:

- frames the events once and hands the same bytes to each WebSocket client of
  the room (Client.send: a non-blocking write, never a wake-up per client);
- answers the room's long-poll waiters: one JSON array (and one HTTP answer)
  per distinct lastReceived, written to their sockets the same way.

The hub remembers the last id it delivered per room. When a message's prev id
is newer than that (a message was missed), or when a subscription is
(re-)established, it backfills from the archive first: listeners get every
event in id order, once. Redis going away only delays delivery; the reader
reconnects with backoff and resubscribes.
"""

import logging
import os
import time
from bisect import bisect_right

import gevent
import redis
from gevent.event import AsyncResult, Event
from gevent.lock import Semaphore

from .client import text_frame
from .config import (
    PUBSUB_BACKOFF_MAX,
    PUBSUB_BACKOFF_MIN,
    PUBSUB_BATCH_MAX,
    RECONNECT_WAIT,
    SECURITY_HEADERS,
    SUBSCRIBE_TIMEOUT,
)
from .metrics import FRAMES_DELIVERED, REDIS_ERRORS
from .room import StoreUnavailable

log = logging.getLogger(__name__)


class ShuttingDown(Exception):
    """The process is stopping: listeners are sent elsewhere."""


class Subscription:
    """This process's listeners of one room, and the last id delivered to them."""

    def __init__(self, room, channel):
        self.room = room
        self.channel = channel
        self.users = 0          # listeners holding this subscription
        self.clients = set()    # WebSocket clients up to date with last_id
        self.joining = {}       # client -> Joiner: catching up, see Hub.attach
        self.waiters = set()    # long polls
        self.last_id = None     # newest id delivered here; None: none yet
        self.ready = Event()    # set while Redis confirms the subscription


class Joiner:
    """A WebSocket client between its archive replay and its first live batch."""

    __slots__ = ("mark", "queue")

    def __init__(self):
        self.mark = None        # newest id the client has; None: still reading
        self.queue = []         # events delivered while it read the archive


class Waiter:
    """One long poll: wants the events with id > after.

    With `fd` (its HTTP socket) the hub writes the whole HTTP answer itself,
    like a WebSocket frame, and the request only finishes; `keep_alive` says
    whether that answer keeps the connection open. While its request reads
    the archive, `queue` collects what the hub delivers (the request answers
    with both); afterwards it is None and the hub answers.
    """

    __slots__ = ("after", "result", "fd", "keep_alive", "queue")

    def __init__(self, after, fd=None, keep_alive=True):
        self.after = after
        self.result = AsyncResult()
        self.fd = fd
        self.keep_alive = keep_alive
        self.queue = []


class Answered:
    """The hub wrote a long poll's answer; `rest` is what the socket did not take."""

    __slots__ = ("rest",)

    def __init__(self, rest):
        self.rest = rest


def http_answer(body, keep_alive):
    """A complete 200 answer carrying a JSON body."""
    head = [b"HTTP/1.1 200 OK", b"Content-Type: application/json",
            b"Content-Length: %d" % len(body),
            b"Connection: keep-alive" if keep_alive else b"Connection: close"]
    head += [f"{name}: {value}".encode() for name, value in SECURITY_HEADERS.items()]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


def write_answer(fd, answer):
    """Writes what the socket takes now (never blocks); returns the Answered rest."""
    try:
        written = os.write(fd, answer)
    except BlockingIOError:
        written = 0
    except OSError:
        return Answered(b"")  # the client went away: nothing left to say
    return Answered(memoryview(answer)[written:])


def frames(events):
    return b"".join([text_frame(raw) for _, raw in events])


def json_array(events):
    return b"[" + b",".join([raw for _, raw in events]) + b"]"


class Hub:
    """Owns this process's pub/sub connection; the only reader of it."""

    def __init__(self, rooms, pubsub_client, settings):
        self._rooms = rooms
        self._client = pubsub_client
        self._ping_interval = settings.ping_interval
        self._fanout_interval = settings.fanout_interval
        self._control = f"{settings.redis_prefix}hub"
        self._subs = {}          # room -> Subscription
        self._by_channel = {}    # channel (bytes) -> Subscription
        self._lock = Semaphore()  # orders (un)subscribe commands like _subs changes
        self._conn = None         # the pub/sub connection, while it is up
        self._greenlets = []
        self._stopping = False
        self._failing = False     # the last connection attempt failed
        self._retry_now = Event()  # ends the reconnect backoff early
        self.connected = Event()  # set while the pub/sub connection is up

    def start(self):
        if not self._greenlets:
            self._greenlets = [gevent.spawn(self._read_forever),
                               gevent.spawn(self._ping_forever)]

    def stop(self):
        """Stops the reader and the pinger."""
        gevent.killall(self._greenlets)
        self._greenlets = []
        self._close()

    # --- listeners ------------------------------------------------------------

    def attach(self, client, after):
        """Sends client the archived events with id > after, then every new one.

        From the moment this returns the client gets each event of its room
        once, in id order. Raises StoreUnavailable or ShuttingDown.
        """
        sub = self._acquire(client.room)
        joiner = sub.joining[client] = Joiner()
        try:
            events = []
            if sub.last_id is None or after < sub.last_id:
                events = self._rooms.history(client.room, after)
        except BaseException:
            del sub.joining[client]
            self._release(sub)
            raise
        mark = events[-1][0] if events else after
        events += [e for e in joiner.queue if e[0] > mark]
        if events:  # bounded by the archive: not counted against the send queue
            client.send(frames(events), 0)
            FRAMES_DELIVERED.labels("websocket").inc(len(events))
            mark = events[-1][0]
        joiner.mark, joiner.queue = mark, None
        if sub.last_id is not None and sub.last_id >= mark:
            del sub.joining[client]
            sub.clients.add(client)

    def detach(self, client):
        sub = self._subs[client.room]
        sub.clients.discard(client)
        sub.joining.pop(client, None)
        self._release(sub)

    def wait(self, room, after, timeout, fd=None, keep_alive=True):
        """The room's events with id > after as a JSON array (bytes).

        Answers at once when the archive has some; else waits up to timeout
        for the next ones and answers b"[]" if none came. When those come and
        `fd` is given, the answer is Answered: the hub wrote it to fd (keeping
        the connection alive or not).
        """
        if self._stopping:
            return b"[]"
        sub = self._acquire(room)
        waiter = Waiter(after, fd, keep_alive)
        sub.waiters.add(waiter)
        try:
            events = []
            if sub.last_id is None or after < sub.last_id:
                events = self._rooms.history(room, after)
            mark = events[-1][0] if events else after
            events += [e for e in waiter.queue if e[0] > mark]
            waiter.queue = None
            if events:
                FRAMES_DELIVERED.labels("longpolling").inc(len(events))
                return json_array(events)
            try:
                return waiter.result.get(timeout=timeout)
            except gevent.Timeout:
                return b"[]"
        finally:
            sub.waiters.discard(waiter)
            self._release(sub)

    def shutdown(self):
        """Closes every WebSocket with 1012 and answers every long poll."""
        self._stopping = True
        for sub in list(self._subs.values()):
            for client in list(sub.clients) + list(sub.joining):
                client.close(1012, "server restarting; reconnect with lastReceived")
            for waiter in list(sub.waiters):
                waiter.result.set(b"[]")

    def clients(self):
        """Every WebSocket client of this process."""
        for sub in list(self._subs.values()):
            yield from list(sub.clients)
            yield from list(sub.joining)

    def _acquire(self, room):
        if self._stopping:
            raise ShuttingDown()
        if self._failing:  # Redis was away: try again now rather than after the backoff
            self._retry_now.set()
            if not self.connected.wait(RECONNECT_WAIT):
                raise StoreUnavailable("the pub/sub connection to Redis is down")
        self.start()
        with self._lock:
            sub = self._subs.get(room)
            if sub is None:
                sub = self._subs[room] = Subscription(room, self._rooms.channel(room))
                self._by_channel[sub.channel.encode()] = sub
                self._command("SUBSCRIBE", sub.channel)
            sub.users += 1
        if not sub.ready.wait(SUBSCRIBE_TIMEOUT):
            self._release(sub)
            raise StoreUnavailable("the pub/sub connection to Redis is down")
        return sub

    def _release(self, sub):
        with self._lock:
            sub.users -= 1
            if sub.users == 0 and self._subs.get(sub.room) is sub:
                del self._subs[sub.room]
                del self._by_channel[sub.channel.encode()]
                self._command("UNSUBSCRIBE", sub.channel)

    def _command(self, name, channel):
        """Sends (UN)SUBSCRIBE; if the connection is down, the reader resubscribes."""
        conn = self._conn
        if conn is None:
            return
        try:
            conn.send_command(name, channel)
        except (redis.RedisError, OSError) as exc:
            log.debug("%s %s failed: %s", name, channel, exc)

    # --- the pub/sub reader -------------------------------------------------------

    def _read_forever(self):
        backoff = PUBSUB_BACKOFF_MIN
        while True:
            try:
                conn = self._open()
                backoff = PUBSUB_BACKOFF_MIN
                self._read(conn)
            except (redis.RedisError, OSError, StoreUnavailable) as exc:
                REDIS_ERRORS.inc()
                if not self._failing:
                    log.warning("redis pub/sub connection lost: %s; reconnecting", exc)
                self._failing = True
                self._close()
                self._retry_now.clear()
                gevent.sleep(PUBSUB_BACKOFF_MIN)
                self._retry_now.wait(backoff - PUBSUB_BACKOFF_MIN)  # a listener may cut it short
                backoff = min(backoff * 2, PUBSUB_BACKOFF_MAX)

    def _open(self):
        """A new pub/sub connection, subscribed to the control channel and every room.

        The hub speaks SUBSCRIBE on a plain redis-py connection rather than
        through redis-py's PubSub: it keeps its own list of subscriptions, and
        reading replies straight off the connection costs half as much.
        """
        pool = self._client.connection_pool
        conn = pool.get_connection()
        try:
            with self._lock:
                conn.send_command("SUBSCRIBE", self._control,
                                  *[s.channel for s in self._subs.values()])
                self._conn = conn
        except BaseException:
            conn.disconnect()
            pool.release(conn)
            raise
        return conn

    def _close(self):
        self.connected.clear()
        with self._lock:
            conn, self._conn = self._conn, None
            for sub in self._subs.values():
                sub.ready.clear()
        if conn is not None:
            conn.disconnect()
            self._client.connection_pool.release(conn)

    def _read(self, conn):
        """Reads forever; each batch is every reply already buffered.

        Fan-outs are at least `fanout_interval` apart: a message that arrives
        sooner waits for the rest of the interval, so a busy room costs one
        write per client per interval, not per message.
        """
        def reply():  # RESP3 (redis-py's default) sends pub/sub messages as pushes
            return conn.read_response(disconnect_on_error=False, push_request=True)

        last_fanout = 0.0
        while True:
            batch = [reply()]
            wait = last_fanout + self._fanout_interval - time.monotonic()
            if wait > 0:
                gevent.sleep(wait)
            last_fanout = time.monotonic()
            while len(batch) < PUBSUB_BATCH_MAX and conn.can_read(timeout=0):
                batch.append(reply())
            self._dispatch(batch)

    def _dispatch(self, batch):
        """Handles pub/sub replies: [b"message", channel, data] or [b"subscribe", channel, n].

        Anything else Redis may push on the connection is ignored.
        """
        by_sub = {}
        for reply in batch:
            if not isinstance(reply, list) or len(reply) != 3:
                continue
            kind, channel, data = reply
            sub = self._by_channel.get(channel)
            if kind == b"message":
                if sub is not None and sub.ready.is_set():
                    by_sub.setdefault(sub, []).append(data)
            elif kind == b"subscribe":
                if channel == self._control.encode():
                    if self._failing:
                        log.warning("redis pub/sub connection re-established")
                    self._failing = False
                    self.connected.set()
                elif sub is not None:
                    self._subscribed(sub)
        for sub, published in by_sub.items():
            self._receive(sub, published)

    def _subscribed(self, sub):
        """Redis confirmed a subscription: backfill what it may have missed."""
        if sub.last_id is not None:
            missed = self._rooms.history(sub.room, sub.last_id)
            if missed:
                self._deliver(sub, missed)
        sub.ready.set()

    def _receive(self, sub, published):
        """Delivers published messages in id order, once, filling gaps first."""
        events = []
        last = sub.last_id
        for data in published:
            prev, eid, raw = data.split(b" ", 2)
            eid = int(eid)
            if last is not None:
                if eid <= last:
                    continue
                if int(prev) > last:
                    missed = self._rooms.history(sub.room, last)
                    events += [e for e in missed if e[0] < eid]
            events.append((eid, raw))
            last = eid
        if events:
            self._deliver(sub, events)

    def _deliver(self, sub, events):
        """Fan-out of one batch: the same bytes to every up-to-date client."""
        sub.last_id = events[-1][0]
        data, count = frames(events), len(events)
        for client in sub.clients:
            client.send(data, count)
        FRAMES_DELIVERED.labels("websocket").inc(count * len(sub.clients))
        if sub.joining:
            self._deliver_to_joiners(sub, events, data)
        if sub.waiters:
            self._answer(sub, events)

    def _deliver_to_joiners(self, sub, events, data):
        """Queues for clients still reading the archive; filters for those ahead."""
        for client, joiner in list(sub.joining.items()):
            if joiner.mark is None:
                joiner.queue += events
                continue
            fresh = [e for e in events if e[0] > joiner.mark]
            if fresh:
                client.send(data if len(fresh) == len(events) else frames(fresh), len(fresh))
                joiner.mark = fresh[-1][0]
            if joiner.mark <= sub.last_id:
                del sub.joining[client]
                sub.clients.add(client)

    def _answer(self, sub, events):
        """One body (and one HTTP answer) per distinct lastReceived, shared by its waiters."""
        ids = [eid for eid, _ in events]
        bodies, answers, answered = {}, {}, 0
        for waiter in list(sub.waiters):
            if waiter.queue is not None:  # reading the archive: its request answers
                waiter.queue += events
                continue
            start = bisect_right(ids, waiter.after)
            if start == len(ids):
                continue
            body = bodies.get(start)
            if body is None:
                body = bodies[start] = json_array(events[start:])
            if waiter.fd is None:
                waiter.result.set(body)
            else:
                key = start, waiter.keep_alive
                if key not in answers:
                    answers[key] = http_answer(body, waiter.keep_alive)
                waiter.result.set(write_answer(waiter.fd, answers[key]))
            sub.waiters.discard(waiter)
            answered += len(ids) - start
        FRAMES_DELIVERED.labels("longpolling").inc(answered)

    # --- keepalive -----------------------------------------------------------------

    def _ping_forever(self):
        """Pings every client each interval; a client silent for a whole interval is closed."""
        while True:
            gevent.sleep(self._ping_interval)
            for client in self.clients():
                client.ping()
