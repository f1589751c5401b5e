"""One room's events in this process: order, de-duplication, gaps, catch-up.

Pure: no I/O and no gevent. The hub (hub.py) feeds it what Redis publishes,
"<prev id> <id> <event JSON>", and reads the archive when it is told a gap
needs filling; listeners receive what it lets through as a Batch.
"""

from bisect import bisect_right


def parse_published(data, newest_plausible):
    """(prev id, id, event JSON) of one published message (bytes).

    Raises ValueError for anything the post script would not publish: the
    event must carry the same id, and an id beyond newest_plausible (ids
    follow Redis's clock in µs) would make every real event look old.
    """
    prev, eid, raw = data.split(b" ", 2)
    prev, eid = int(prev), int(eid)
    if not (0 <= prev < eid <= newest_plausible and raw.startswith(b'{"id":%d,' % eid)
            and raw.endswith(b"}")):
        raise ValueError("not a published event")
    return prev, eid, raw


class Batch:
    """Events of one room, in id order, handed to every listener of the room.

    Each encoding of a batch (WebSocket frames, SSE text, an HTTP answer) is
    built once, by whichever listener asks for it first, and shared by the
    rest. A replay (archived events a joining listener catches up with) is
    marked, so send queues need not count it: the archive size bounds it.
    """

    __slots__ = ("events", "replay", "_encoded", "_since")

    def __init__(self, events, replay=False):
        self.events = events        # [(id, event JSON bytes)], ids increasing
        self.replay = replay
        self._encoded = {}
        self._since = {}

    def __len__(self):
        return len(self.events)

    @property
    def last_id(self):
        return self.events[-1][0]

    def encoded(self, encode):
        """encode(events), computed once per batch."""
        try:
            return self._encoded[encode]
        except KeyError:
            value = self._encoded[encode] = encode(self.events)
            return value

    def since(self, after):
        """The events with id > after, as a batch shared by every listener that asks (None if none)."""
        start = bisect_right(self.events, after, key=lambda e: e[0])
        if start == 0:
            return self
        if start == len(self.events):
            return None
        part = self._since.get(start)
        if part is None:
            part = self._since[start] = Batch(self.events[start:], self.replay)
        return part


class Sequence:
    """The newest id this process delivered in one room, and what may follow it."""

    def __init__(self):
        self.last_id = None     # None: nothing delivered yet

    def gap_before(self, prev):
        """Whether events published before this one (whose predecessor is prev) were missed."""
        return self.last_id is not None and prev > self.last_id

    def accept(self, events):
        """Those of events (in id order) newer than the last delivered; the newest becomes the last."""
        if self.last_id is not None:
            events = [e for e in events if e[0] > self.last_id]
        if events:
            self.last_id = events[-1][0]
        return events

    def needs_archive(self, after):
        """Whether a listener that has every event up to `after` may lack archived ones."""
        return self.last_id is None or after < self.last_id


class CatchUp:
    """A listener joining a room while its events flow.

    It reads the archive after `after`; what the hub delivers meanwhile is
    queued here. The archive plus the queue, merged, is every event once, in
    id order; afterwards, live batches are trimmed to what the listener lacks
    until the hub's sequence has caught up with it.
    """

    __slots__ = ("mark", "queue")

    def __init__(self, after):
        self.mark = after       # the newest id the listener has
        self.queue = []         # batches delivered while it reads the archive; None after

    def archived(self, events):
        """The archive read ended with `events` (id > after): the replay to send, or None."""
        merged = []
        for batch in [Batch(events), *self.queue]:
            for event in batch.events:
                if event[0] > self.mark:
                    merged.append(event)
                    self.mark = event[0]
        self.queue = None
        return Batch(merged, replay=True) if merged else None

    def live(self, batch):
        """What of a live batch the listener gets now, or None."""
        if self.queue is not None:
            self.queue.append(batch)
            return None
        fresh = batch.since(self.mark)
        if fresh is not None:
            self.mark = fresh.last_id
        return fresh

    def caught_up(self, last_id):
        """Whether the room's sequence, at last_id, has reached what the listener
        has: from then on every batch is new to it, whole."""
        return self.queue is None and last_id is not None and last_id >= self.mark
