"""What a receiver got: frames parsed after the fact, checked, and timed.

During a step a client only records: each read appends its bytes to the
client's buffer with the read's end offset and CLOCK_MONOTONIC time. Here,
after the step, those recordings become figures:

- `parse` walks whole server-to-client frames (RFC 6455 headers, unmasked)
  and reads every event's id and every benchmark message's marker;
- `check_ids` and `check_sequences` count id order violations, losses,
  duplicates and out-of-order deliveries;
- `arrival_times` gives each frame the time of the read that completed it;
- `LatencyHistogram` merges latencies from every process into percentiles.

Every client of a room gets the same bytes from the server, so a process
parses each distinct stream once and compares the others to it byte for
byte (see client.py): a client whose bytes differ is parsed on its own.
"""

import math
import re

import numpy as np

# Where a benchmark message's text ends, counted live for the drain. Not "~"
# alone: 0x7E is also the length byte of every frame of 126 bytes or more.
MESSAGE_MARK = b'~","ts":'
HIST_RATIO = 1.01            # latency histogram: each bucket is 1 % wider than the one before
HIST_MIN_NS = 1_000          # latencies below 1 µs fall in the first bucket
HIST_BUCKETS = 1_900         # buckets up to 1 µs * 1.01**1900 (about 160 s)
SEQ_SHIFT = 32               # (sender << SEQ_SHIFT) | seq: one int64 key per message

# A benchmark message event: the marker "<step>.<sender>.<seq>.<send ns>~" is its text.
_MESSAGE = re.compile(rb'"type":"message","room":"[^"]*","user":"[^"]*",'
                      rb'"text":"(\d+)\.(\d+)\.(\d+)\.(\d+)~')
_EVENT_PREFIX = b'{"id":'


def message_text(step, sender, seq, send_ns):
    """The text a sender posts; `parse` reads these four numbers back."""
    return b"%d.%d.%d.%d~" % (step, sender, seq, send_ns)


class Frames:
    """The whole frames at the start of a stream, in arrival order."""

    def __init__(self):
        self.ids = []         # id of every event frame
        self.msg_end = []     # end offset of each message frame in the stream
        self.msg_step = []    # its step, sender, sequence number and send time (ns)
        self.msg_sender = []
        self.msg_seq = []
        self.msg_sent_ns = []
        self.close_codes = []  # the code of each close frame
        self.errors = 0       # {"type": "error"} frames (rate limit, store unavailable)
        self.other = 0        # pings and anything else that is neither event nor close
        self.consumed = 0     # bytes of whole frames; the rest is an incomplete frame


def parse(data):
    """Parses every whole frame of data (bytes) from offset 0.

    Guarantees: each frame is read by its header (7-, 16- or 64-bit length);
    an incomplete last frame is left out and `consumed` says where it starts.
    """
    out = Frames()
    ids, match, find = out.ids, _MESSAGE.match, data.find
    pos, size = 0, len(data)
    while pos + 2 <= size:
        length = data[pos + 1] & 0x7F
        head = 2
        if length == 126:
            if pos + 4 > size:
                break
            length, head = int.from_bytes(data[pos + 2:pos + 4], "big"), 4
        elif length == 127:
            if pos + 10 > size:
                break
            length, head = int.from_bytes(data[pos + 2:pos + 10], "big"), 10
        start = pos + head
        end = start + length
        if end > size:
            break
        opcode = data[pos] & 0x0F
        if opcode == 1 and data.startswith(_EVENT_PREFIX, start):
            comma = find(b",", start + 6, end)
            ids.append(int(data[start + 6:comma]))
            m = match(data, comma + 1, end)
            if m is not None:
                out.msg_end.append(end)
                out.msg_step.append(int(m[1]))
                out.msg_sender.append(int(m[2]))
                out.msg_seq.append(int(m[3]))
                out.msg_sent_ns.append(int(m[4]))
        elif opcode == 1 and b'"type":"error"' in data[start:end]:
            out.errors += 1
        elif opcode == 8:
            out.close_codes.append(int.from_bytes(data[start:start + 2], "big") if length >= 2
                                   else 1005)
        else:
            out.other += 1
        pos = end
    out.consumed = pos
    return out


def check_ids(ids, after):
    """How many ids are not above every id before them (starting from `after`)."""
    a = np.asarray(ids, dtype=np.int64)
    if len(a) == 0:
        return 0
    previous = np.maximum.accumulate(np.concatenate(([after], a[:-1])))
    return int(np.count_nonzero(a <= previous))


def check_sequences(senders, seqs, sent_by_sender):
    """(lost, duplicates, out_of_order, unexpected) for one receiver's messages of a step.

    sent_by_sender maps a sender to how many messages it sent (sequence
    numbers 1..n). A duplicate is a (sender, seq) delivered again; out of
    order is a first delivery after a higher seq of the same sender; lost is a
    sent message never delivered; unexpected is one nobody sent.
    """
    keys = (np.asarray(senders, dtype=np.int64) << SEQ_SHIFT) | np.asarray(seqs, dtype=np.int64)
    unique, first = np.unique(keys, return_index=True)
    duplicates = len(keys) - len(unique)
    firsts = np.zeros(len(keys), dtype=bool)
    firsts[first] = True
    order = np.argsort(keys >> SEQ_SHIFT, kind="stable")   # by sender, then arrival
    grouped = keys[order]
    later = np.zeros(len(keys), dtype=bool)
    if len(keys) > 1:
        later[order[1:]] = grouped[1:] < np.maximum.accumulate(grouped)[:-1]
    out_of_order = int(np.count_nonzero(later & firsts))
    expected = 0
    for sender, count in sent_by_sender.items():
        lo = (sender << SEQ_SHIFT) | 1
        hi = (sender << SEQ_SHIFT) | count
        expected += int(np.count_nonzero((unique >= lo) & (unique <= hi)))
    unexpected = len(unique) - expected
    lost = sum(sent_by_sender.values()) - expected
    return lost, duplicates, out_of_order, unexpected


def arrival_times(frame_ends, read_ends, read_times):
    """The time of the read that completed each frame (all int64 arrays of offsets / ns)."""
    index = np.searchsorted(read_ends, frame_ends, side="left")
    return read_times[np.minimum(index, len(read_times) - 1)]


class LatencyHistogram:
    """Log-bucketed latencies (1 % resolution), mergeable across processes."""

    def __init__(self, counts=None, total_ns=0, max_ns=0, negative=0):
        self.counts = np.zeros(HIST_BUCKETS, dtype=np.int64) if counts is None \
            else np.asarray(counts, dtype=np.int64)
        self.total_ns = total_ns   # sum of all latencies, for the mean
        self.max_ns = max_ns
        self.negative = negative   # receive before send: a clock problem, should stay 0

    def add(self, latencies_ns):
        """Adds an int64 array of latencies."""
        if len(latencies_ns) == 0:
            return
        self.negative += int(np.count_nonzero(latencies_ns < 0))
        clipped = np.maximum(latencies_ns, HIST_MIN_NS).astype(np.float64)
        index = np.minimum((np.log(clipped / HIST_MIN_NS) / math.log(HIST_RATIO)).astype(np.int64),
                           HIST_BUCKETS - 1)
        self.counts += np.bincount(index, minlength=HIST_BUCKETS)
        self.total_ns += int(latencies_ns.sum())
        self.max_ns = max(self.max_ns, int(latencies_ns.max()))

    def merge(self, other):
        self.counts += other.counts
        self.total_ns += other.total_ns
        self.max_ns = max(self.max_ns, other.max_ns)
        self.negative += other.negative

    def state(self):
        """A picklable form; LatencyHistogram(*state) rebuilds it."""
        return (self.counts, self.total_ns, self.max_ns, self.negative)

    @property
    def count(self):
        return int(self.counts.sum())

    def quantile_ms(self, q):
        """The q-quantile in ms (bucket's geometric middle), None without data."""
        n = self.count
        if n == 0:
            return None
        index = int(np.searchsorted(np.cumsum(self.counts), math.ceil(q * n)))
        return HIST_MIN_NS * HIST_RATIO ** (index + 0.5) / 1e6

    def mean_ms(self):
        n = self.count
        return self.total_ns / n / 1e6 if n else None
