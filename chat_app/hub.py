"""This process's hub: its subscriptions, and each room's listeners.

A post runs the Lua script (room.py), which publishes "<prev> <id> <event>"
on the room's channel. The hub's links (pubsub.py) read its pub/sub
connections: one to a single Redis, or one per cluster shard that owns a
room it listens to. Each takes every message already buffered (a batch),
and the hub puts each room's messages in order with
the room's Sequence (sequence.py), backfilling from the archive when a prev
id shows a gap, and hands the room's Batch to each listener:

    listener.deliver(batch) -> events taken     (never blocks or yields)
    listener.ping()                             (every 0.9 CHAT_PING_INTERVAL)
    listener.close(code, reason)                (shutdown, moderation)

A WebSocket client (client.py), an event stream (stream.py) and a long poll
(longpoll.py) are listeners; each owns its wire format and its socket, and
the hub knows nothing of either. Redis going away only delays delivery: a
link reconnects with backoff, resubscribes and backfills; on a cluster its
rooms follow their slots to a promoted replica or another master.

Nothing the hub has accepted into a room's Sequence waits across a yield
before it is handed to the listeners, and the Sequence drops what it has
handed out, so a room's listeners see its events once and in id order, even
while its channel moves between links and two of them read it for a moment.
"""

import logging
import time

import gevent
from gevent.event import Event
from gevent.lock import Semaphore

from .config import (
    ID_CLOCK_SLACK,
    PING_SLICES,
    PUBSUB_PING_INTERVAL,
    RECONNECT_WAIT,
    SUBSCRIBE_TIMEOUT,
    YIELD_EVERY,
)
from .control import parse_request
from .exceptions import ShuttingDown, StoreUnavailable
from .keepalive import PingSchedule
from .metrics import DELIVERED, HUB_ERRORS
from .pubsub import Link, sort_replies
from .store import STORE_ERRORS
from .sequence import Batch, CatchUp, Sequence, parse_published

log = logging.getLogger(__name__)


class Subscription:
    """This process's listeners of one room, and the room's Sequence."""

    def __init__(self, room, channel):
        self.room = room
        self.channel = channel
        self.sequence = Sequence()
        self.current = {}       # transport -> listeners up to date with the sequence
        self.joining = {}       # listener -> CatchUp, while it catches up
        self.users = 0          # listeners holding this subscription
        self.ready = Event()    # set while Redis confirms the subscription

    def backfill_from(self):
        """The id after which this process may have missed the room's events
        while unsubscribed: the last it delivered or, before any, the oldest a
        listener has (None: no listener has read the archive yet)."""
        if self.sequence.last_id is not None:
            return self.sequence.last_id
        marks = [catch_up.mark for catch_up in self.joining.values() if catch_up.queue is None]
        return min(marks, default=None)

    def listeners(self):
        for group in list(self.current.values()):
            yield from list(group)
        yield from list(self.joining)


class Hub:
    """This process's subscriptions: the links (pub/sub connections) they
    travel on, one per Redis node, and each room's listeners."""

    def __init__(self, rooms, nodes, settings, control):
        self._rooms = rooms
        self._nodes = nodes       # where each channel's messages come from: store.Nodes
        self._control = control   # requests from other processes: control.py
        self._ping_interval = settings.ping_interval
        self.fanout_interval = settings.fanout_interval
        self._subs = {}          # room -> Subscription
        self._by_channel = {}    # channel (bytes) -> Subscription
        self._links = {}         # node -> Link
        self._route = {}         # channel -> the Link it is wanted on
        self._pings = PingSchedule(PING_SLICES)  # when each attached listener is pinged
        self._lock = Semaphore()  # orders (un)subscribe commands like the changes above
        self._greenlets = []
        self._stopping = False

    def start(self):
        if not self._greenlets:
            # Listeners are pinged a tenth early, so no stream's keepalives are
            # ever more than CHAT_PING_INTERVAL apart (and a silent WebSocket is
            # still closed within two intervals); a round is spread over
            # PING_SLICES ticks (keepalive.py).
            self._greenlets = [gevent.spawn(self._supervised, self._ping_listeners,
                                            self._ping_interval * 0.9 / PING_SLICES),
                               gevent.spawn(self._supervised, self._watch_links,
                                            PUBSUB_PING_INTERVAL)]
            with self._lock:
                self._assign(self._control.channel)

    def up(self, timeout):
        """Whether this process's subscriptions are up: every link connected. A
        link still making its first connection is given up to timeout (one
        that failed is not)."""
        self.start()
        for link in list(self._links.values()):
            if not link.connected.is_set() and not link.failing.is_set():
                gevent.wait([link.connected, link.failing], count=1, timeout=timeout)
        return all(link.connected.is_set() for link in list(self._links.values()))

    def stop(self):
        """Stops the links, the pinger and the links' watchdog."""
        gevent.killall(self._greenlets)
        self._greenlets = []
        for link in list(self._links.values()):
            link.stop()
        self._links, self._route = {}, {}

    # --- listeners ------------------------------------------------------------

    def attach(self, listener, after, read=None):
        """Hands listener the archived events with id > after, then every new one.

        From the moment this returns the listener gets each event of its room
        once, in id order. The archive is read once the room's subscription
        is up, with read(after) when given (a join posts its event in the same
        round trip), else with the room's history when the listener may lack
        any of it. Raises StoreUnavailable or ShuttingDown.
        """
        sub = self._acquire(listener.room)
        catch_up = sub.joining[listener] = CatchUp(after)
        try:
            archived = []
            if read is not None:
                archived = read(after)
            elif sub.sequence.needs_archive(after):
                archived = self._rooms.history(sub.room, after)
        except BaseException:
            del sub.joining[listener]
            self._release(sub)
            raise
        self._pings.add(listener)
        replay = catch_up.archived(archived)
        if replay is not None:
            DELIVERED[listener.transport].inc(listener.deliver(replay))
        self._promote(sub, listener, catch_up)

    def detach(self, listener):
        self._pings.discard(listener)
        sub = self._subs[listener.room]
        sub.current.get(listener.transport, set()).discard(listener)
        sub.joining.pop(listener, None)
        self._release(sub)

    def listeners(self):
        """Every listener of this process."""
        for sub in list(self._subs.values()):
            yield from sub.listeners()

    def close_user(self, room, user, code, reason):
        """Closes user's WebSockets and streams in room, in this process; how many."""
        sub = self._subs.get(room)
        if sub is None:
            return 0
        closing = [listener for listener in sub.listeners()
                   if listener.user == user and listener.transport != "longpolling"]
        for listener in closing:
            listener.close(code, reason)
        return len(closing)

    def shutdown(self):
        """Closes every listener with 1012; new ones are refused with ShuttingDown."""
        self._stopping = True
        for listener in self.listeners():
            listener.close(1012, "server restarting; reconnect with lastReceived")

    def _acquire(self, room):
        if self._stopping:
            raise ShuttingDown()
        self.start()
        with self._lock:
            sub = self._subs.get(room)
            if sub is None:
                sub = self._subs[room] = Subscription(room, self._rooms.channel(room))
                self._by_channel[sub.channel.encode()] = sub
                try:
                    self._assign(sub.channel)
                except StoreUnavailable:
                    del self._subs[room], self._by_channel[sub.channel.encode()]
                    raise
            sub.users += 1
            link = self._route[sub.channel]
        if link.failing.is_set():  # Redis was away: try again now, not after the backoff
            link.retry_now.set()
            link.connected.wait(RECONNECT_WAIT)
        # Confirmed, or the connection failed (no need to wait out the timeout then).
        gevent.wait([sub.ready, link.failing], count=1, timeout=SUBSCRIBE_TIMEOUT)
        if not sub.ready.is_set():
            self._release(sub)
            raise StoreUnavailable("the pub/sub connection to Redis is down")
        return sub

    def _release(self, sub):
        with self._lock:
            sub.users -= 1
            if sub.users == 0 and self._subs.get(sub.room) is sub:
                del self._subs[sub.room]
                del self._by_channel[sub.channel.encode()]
                self._route.pop(sub.channel).remove(sub.channel)

    # --- the links: which node carries each channel --------------------------------

    def _assign(self, channel, fallback=None):
        """Wants channel on the link to the node that carries it now (lock held).
        If no node is known for it, on fallback; without one, raises StoreUnavailable."""
        try:
            node = self._nodes.node_for(channel)
        except StoreUnavailable:
            if fallback is None:
                raise
            node = fallback.node
        link = self._links.get(node)
        if link is None:
            link = self._links[node] = Link(node, self._nodes, self, self._lock)
        self._route[channel] = link
        link.add(channel)

    def _reassign(self, link, channels):
        """Channels no longer subscribed on link go, after a look at the
        cluster's slots, to the node that carries them now (maybe the same)."""
        try:
            self._nodes.refresh()
        except STORE_ERRORS as exc:
            log.warning("the cluster's slots could not be read: %s", exc)
        with self._lock:
            for channel in channels:
                if self._route.get(channel) is link:
                    link.drop(channel)
                    self._assign(channel, fallback=link)

    def lost(self, link):
        """A link's connection ended: on a cluster its channels follow their
        slots (a replica promoted, a slot moved). Whether the link still has
        channels to reconnect for; one with none is retired."""
        if self._nodes.sharded:
            self._reassign(link, list(link.channels))
        with self._lock:
            if link.channels:
                return True
            if self._links.get(link.node) is link:
                del self._links[link.node]
            return False

    def unready(self, link):
        """link's connection is down: its rooms are not ready until resubscribed (lock held)."""
        for channel in link.channels:
            sub = self._by_channel.get(channel.encode())
            if sub is not None:
                sub.ready.clear()

    # --- what the links read ------------------------------------------------------

    def dispatch(self, link, replies):
        """A batch of replies read on link: confirmations, then each room's messages."""
        published, confirmed, dropped = sort_replies(replies)
        control = self._control.channel.encode()
        subscribed = [self._by_channel[channel] for channel in confirmed
                      if link.confirmed(channel) and channel in self._by_channel]
        if subscribed:
            self._subscribed(subscribed)
        if dropped:
            self._dropped(link, dropped)
        for channel, messages in published.items():
            if channel == control:
                for data in messages:
                    self._on_control(data)
                continue
            sub = self._by_channel.get(channel)
            if sub is not None and sub.ready.is_set():
                self._receive(sub, messages)

    def _dropped(self, link, channels):
        """A shard unsubscribed channels it no longer owns (their slot moved):
        those still wanted are subscribed again where they live now."""
        wanted = [c.decode() for c in channels
                  if link.moved_away(c) and self._route.get(c.decode()) is link]
        for channel in wanted:
            sub = self._by_channel.get(channel.encode())
            if sub is not None:
                sub.ready.clear()
        if wanted:
            log.warning("%d channels moved away from %s; following them", len(wanted), link.node)
            gevent.spawn(self._reassign, link, wanted)

    def _on_control(self, data):
        """A request published on the control channel: acted on, and answered."""
        request = parse_request(data)
        if request is None:
            log.warning("ignoring a malformed control message")
            return
        room, user, reply = request
        count = self.close_user(room, user, 1008, "disconnected by the server")
        gevent.spawn(self._control.answer, reply, count)

    def _subscribed(self, subs):
        """Redis confirmed subscriptions: each room is backfilled with what its
        listeners may have missed, and is ready. The archives of every room a
        batch confirms are read in one round trip (a reconnected link
        resubscribes all its rooms at once); a room with nothing to backfill is
        ready at once, with no yield between asking and answering."""
        behind = []
        for sub in subs:
            after = sub.backfill_from()
            if after is None:
                sub.ready.set()
            else:
                behind.append((sub, after))
        if not behind:
            return
        archives = self._rooms.histories([(sub.room, after) for sub, after in behind])
        for (sub, _), archived in zip(behind, archives):
            self._fan_out(sub, sub.sequence.accept(archived))
            sub.ready.set()

    def _receive(self, sub, messages):
        """Delivers published messages in id order, once, filling gaps from the archive."""
        sequence, events = sub.sequence, []
        newest_plausible = int((time.time() + ID_CLOCK_SLACK) * 1_000_000)
        for data in messages:
            try:
                prev, eid, raw = parse_published(data, newest_plausible)
            except ValueError:  # not from the post script: one bad message never stops a room
                HUB_ERRORS.inc()
                log.warning("ignoring a malformed message on %s", sub.channel)
                continue
            if sequence.gap_before(prev):
                self._fan_out(sub, events)  # nothing accepted waits across the read below
                events = sequence.accept(self._rooms.history(sub.room, sequence.last_id))
            events += sequence.accept([(eid, raw)])
        self._fan_out(sub, events)

    def _fan_out(self, sub, events):
        """One batch to every listener of the room: whole to those up to date,
        trimmed to what they lack for those catching up."""
        if not events:
            return
        batch = Batch(events)
        for transport, group in sub.current.items():
            delivered = 0
            for listener in group:  # deliver never yields: the group cannot change meanwhile
                try:
                    delivered += listener.deliver(batch)
                except Exception:
                    self._failed(listener)
            DELIVERED[transport].inc(delivered)
        for listener, catch_up in list(sub.joining.items()):
            fresh = catch_up.live(batch)
            if fresh is not None:
                try:
                    DELIVERED[listener.transport].inc(listener.deliver(fresh))
                except Exception:
                    self._failed(listener)
            self._promote(sub, listener, catch_up)

    def _failed(self, listener):
        """A listener raised while handed a batch: it is closed, not the room."""
        HUB_ERRORS.inc()
        log.exception("a %s listener failed; closing it", listener.transport)
        listener.close(1011, "internal error")

    def _promote(self, sub, listener, catch_up):
        """A listener that has caught up with the room gets whole batches from now on."""
        if catch_up.caught_up(sub.sequence.last_id) and sub.joining.get(listener) is catch_up:
            del sub.joining[listener]
            sub.current.setdefault(listener.transport, set()).add(listener)

    # --- keepalive -----------------------------------------------------------------

    def _supervised(self, tick, interval):
        """Runs tick every interval; an error is logged and counted, and the next tick runs."""
        while True:
            gevent.sleep(interval)
            try:
                tick()
            except Exception:
                HUB_ERRORS.inc()
                log.exception("%s failed", tick.__name__)

    def _ping_listeners(self):
        """One tick of the keepalive round: pings the listeners whose slot is
        due (a WebSocket silent since its last ping is closed), yielding to the
        event loop every YIELD_EVERY listeners, so even a worker's largest
        slot never holds up a fan-out for long."""
        for count, listener in enumerate(self._pings.due(), 1):
            listener.ping()
            if count % YIELD_EVERY == 0:
                gevent.sleep(0)

    def _watch_links(self):
        """Every link's connection is PINGed; a silent one is replaced."""
        for link in list(self._links.values()):
            link.watch()
