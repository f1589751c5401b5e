"""When each listener is pinged: a keepalive round spread over many ticks (pure).

Pinging all of a worker's listeners at once makes all their pongs come back
at once, and thousands of greenlets woken together delay every fan-out
behind them. So a round is cut into PING_SLICES ticks: each listener gets a
slot when it arrives (round robin, so even a reconnect storm fills the slots
evenly) and is pinged at every tick of its slot, exactly one round apart.
"""


class PingSchedule:
    """Which listeners each tick pings.

    Invariant: every listener added and not yet discarded is in exactly one
    slot, and each call to `due` returns the next slot's, so a listener is
    returned once every `slices` calls, never twice in fewer.
    """

    def __init__(self, slices):
        self._slots = [{} for _ in range(slices)]  # listener -> None (a set that keeps order)
        self._slot_of = {}       # listener -> its slot
        self._next_slot = 0      # the slot the next listener joins
        self._tick = 0           # the slot the next call to due returns

    def __len__(self):
        return len(self._slot_of)

    def add(self, listener):
        if listener in self._slot_of:
            return
        slot = self._next_slot
        self._next_slot = (slot + 1) % len(self._slots)
        self._slot_of[listener] = slot
        self._slots[slot][listener] = None

    def discard(self, listener):
        slot = self._slot_of.pop(listener, None)
        if slot is not None:
            del self._slots[slot][listener]

    def due(self):
        """The listeners to ping at this tick (a list: pinging may discard some)."""
        listeners = list(self._slots[self._tick])
        self._tick = (self._tick + 1) % len(self._slots)
        return listeners
