"""A client process of WebSocket clients: connect, record, send, and analyse.

The hot path is `WsLoop.on_ready`: one read per readiness event, appended to
the client's buffer with the read's end offset and time, plus one C-level
count of message marks (for the drain). No frame is parsed while a step runs;
`analyze` does it afterwards (analysis.py), so the generator's CPU during
the measurement is the kernel's read path and this loop, and is reported.

Senders are clients too (the server echoes a sender's message to it like to
everyone). They send open loop, evenly phased across all senders of all
processes, like wsbench: sender s of S sends its k-th message at
start + (s/S + k) * S/rate.
"""

import heapq
import select
from array import array
from collections import Counter

import numpy as np

from .analysis import (MESSAGE_MARK, LatencyHistogram, arrival_times, check_ids,
                       check_sequences, message_text, parse)
from .loop import DEAD, OPEN, Conn, Loop, cpu_seconds, now_ns

KEEPALIVE_NS = 10 * 10**9      # each client sends a pong this often: the server closes silent peers
CONNECTED_CHECK_NS = 50 * 10**6  # while clients connect, how often all are looked over (one look is O(clients))
PONG = b"\x8a\x80\x00\x00\x00\x00"  # an unsolicited, masked (key 0), empty pong frame
MASK_ZERO = b"\x00\x00\x00\x00"    # client frames must be masked; a zero key leaves text as is
REFERENCES_MAX = 16            # distinct streams kept per analysis to compare the others with
READ_EVENTS = select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR


def handshake(port, path):
    """The HTTP upgrade request of a WebSocket client (no Origin: not a browser)."""
    return (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n").encode()


def text_frame(payload):
    """A final, masked client text frame of a payload under 126 bytes."""
    assert len(payload) < 126
    return b"\x81" + bytes((0x80 | len(payload),)) + MASK_ZERO + payload


class WsConn(Conn):
    __slots__ = ("room", "needle", "scan", "ready_ns", "buf", "ends", "times", "leftover",
                 "last_id", "out", "polling_out", "sender")

    def __init__(self, index, request, room, user):
        super().__init__(index, request)
        self.room = room            # its room: it receives the messages of that room's senders
        self.needle = b'"type":"join","room":"%s","user":"%s",' % (room.encode(), user.encode())
        self.scan = 0               # where to look for the own join next
        self.ready_ns = 0           # when the own join event arrived; 0: not yet
        self.buf = bytearray()      # bytes received since the last analysis
        self.ends = array("q")      # end offset in buf of each read
        self.times = array("q")     # CLOCK_MONOTONIC ns of each read
        self.leftover = b""         # an incomplete frame carried over from the last analysis
        self.last_id = 0            # newest event id analysed so far
        self.out = b""              # bytes the socket did not take yet
        self.polling_out = False    # registered for EPOLLOUT (while out is not empty)
        self.sender = None          # the sender number, for the first S clients


class WsLoop(Loop):
    """Serves the commands of scenarios.FanOut (see on_command)."""

    conn_class = WsConn           # what a connect command's clients are
    unsolicited_pongs = True      # a pong every KEEPALIVE_NS from each client (pings are not read)

    def __init__(self, pipe, port):
        super().__init__(pipe, port)
        self.marks = 0                # message marks received since the last analysis
        self.received = 0             # bytes received, ever (the orchestrator watches it go quiet)
        self.batch = []               # the Conns of the last connect command
        self.connect_deadline = None
        self.connected_check_at = 0  # when the connecting clients are looked over next
        self.schedule = []            # heap of (due ns, sender, seq, first due ns, conn)
        self.step = None              # (step, start ns, end ns, interval ns) while sending
        self.sent = Counter()         # messages sent this step, by sender
        self.lag_max = 0              # latest send behind schedule this step, ns
        self.step_conns = []          # clients open when the step started: its receivers
        self.cpu0 = self.cpu1 = 0.0   # this process's CPU at step start and at drain end
        self.drain = None             # (expected marks, deadline ns) while draining
        self.next_keepalive = now_ns() + KEEPALIVE_NS if self.unsolicited_pongs else None

    # --- commands -----------------------------------------------------------

    def on_command(self, name, args):
        """connect, received, settle, send, drain, analyze (and the base's stop, cpu).

        connect(clients=[(index, path, room, user, sender or None)], rate, start_ns,
                deadline_ns): replies ("connected", figures) once every client saw
                its own join event, failed, or the deadline passed.
        received(): ("received", bytes received ever).
        settle(): parses what arrived so far (history, joins); ("settled", figures).
        send(step, rate, senders, start_ns, end_ns): this process's senders send
                their share; ("sent", {sender: count}, lag ns) after end_ns.
        drain(sent_by_room, deadline_ns): ("drained", ns, marks) once every receiver
                here got a mark for each message its room's senders sent, or at the
                deadline. sent_by_room: {room: {sender: messages sent}}.
        analyze(step, sent_by_room, send_end_ns): ("analysis", figures).
        """
        if name == "connect":
            conns = []
            for index, path, room, user, sender in args["clients"]:
                conn = self.conn_class(index, handshake(self.port, path), room, user)
                conn.sender = sender
                conns.append(conn)
            self.batch = conns
            self.connect_deadline = args["deadline_ns"]
            self.connect(conns, args["rate"], args["start_ns"])
        elif name == "received":
            self.reply("received", self.received)
        elif name == "settle":
            self.reply("settled", self.analyze(None, {}, 0))
        elif name == "send":
            self.start_step(**args)
        elif name == "drain":
            sent = {room: sum(senders.values()) for room, senders in args["sent_by_room"].items()}
            expected = sum(sent.get(c.room, 0) for c in self.step_conns if c.state == OPEN)
            self.drain = (expected, args["deadline_ns"])
        elif name == "analyze":
            self.reply("analysis", self.analyze(**args))
        else:
            super().on_command(name, args)

    # --- the hot path -------------------------------------------------------------

    def on_open(self, conn, head, rest):
        if not head.startswith(b"HTTP/1.1 101"):
            self.fail(conn, "handshake: " + head.split(b"\r\n", 1)[0].decode("latin-1"))
            return
        if rest:
            self.record(conn, rest, now_ns())

    def on_ready(self, conn, events):
        if events & select.EPOLLOUT:
            self.flush(conn)
        if not events & READ_EVENTS:
            return
        data = self.receive(conn)
        if data is not None:
            self.record(conn, data, now_ns())

    def record(self, conn, data, t):
        """Appends one read to the client's buffer; finds its own join while not ready."""
        buf = conn.buf
        start = len(buf)
        buf += data
        conn.ends.append(len(buf))
        conn.times.append(t)
        # a mark may straddle two reads: look from just before the new bytes
        self.marks += buf.count(MESSAGE_MARK, max(0, start - len(MESSAGE_MARK) + 1))
        self.received += len(data)
        if not conn.ready_ns:
            if buf.find(conn.needle, conn.scan) >= 0:
                conn.ready_ns = t
            else:
                conn.scan = max(0, len(buf) - len(conn.needle))

    def write(self, conn, data):
        """Sends data after what is waiting; never blocks."""
        if conn.state != OPEN:
            return
        conn.out += data
        if not conn.polling_out:  # nothing was waiting: send now
            self.flush(conn)

    def flush(self, conn):
        """Sends what is waiting; the client polls for EPOLLOUT exactly while some remains."""
        try:
            conn.out = conn.out[conn.sock.send(conn.out):]
        except BlockingIOError:
            pass
        except OSError as exc:
            self.fail(conn, f"write: {exc.strerror}")
            return
        if bool(conn.out) != conn.polling_out:
            conn.polling_out = bool(conn.out)
            self.epoll.modify(conn.fd, select.EPOLLIN | (select.EPOLLOUT if conn.out else 0))

    # --- timed work -------------------------------------------------------------------

    def timeout(self, now):
        due = [self.next_keepalive] if self.next_keepalive is not None else []
        if self.schedule:
            due.append(self.schedule[0][0])
        elif self.step is not None:
            due.append(self.step[2])
        if self.drain is not None:
            due.append(self.drain[1])
        if self.connect_deadline is not None:
            due.append(min(self.connect_deadline, self.connected_check_at))
        return max(0, min(due) - now) / 1e9 if due else None

    def tick(self, now):
        if self.schedule and self.schedule[0][0] <= now:
            self.send_due(now)
        if self.step is not None and not self.schedule and now >= self.step[2]:
            self.reply("sent", dict(self.sent), self.lag_max)
            self.step = None
        if self.drain is not None:
            expected, deadline = self.drain
            if self.marks >= expected or now >= deadline:
                self.cpu1 = cpu_seconds()
                self.reply("drained", now_ns(), self.marks)
                self.drain = None
        if self.connect_deadline is not None and now >= self.connected_check_at:
            # not after every wake-up: a look at every client costs O(clients),
            # and pings wake the loop thousands of times a second
            self.connected_check_at = now + CONNECTED_CHECK_NS
            self.check_connected(now)
        if self.next_keepalive is not None and now >= self.next_keepalive:
            for conn in self.conns.values():
                if conn.state == OPEN:
                    self.write(conn, PONG)
            self.next_keepalive = now + KEEPALIVE_NS

    def check_connected(self, now):
        batch = self.batch
        if now < self.connect_deadline and (self.pending or any(
                c.state != DEAD and not c.ready_ns for c in batch)):
            return
        self.connect_deadline = None
        errors = Counter(c.error for c in batch if c.state == DEAD)
        self.reply("connected", {
            "clients": len(batch),
            "connected": sum(1 for c in batch if c.open_ns),
            "ready": sum(1 for c in batch if c.ready_ns and c.state == OPEN),
            "failed": sum(1 for c in batch if not c.open_ns),
            "errors": dict(errors),
            "handshake_ms": [(c.open_ns - c.started_ns) / 1e6 for c in batch if c.open_ns],
            "ready_ms": [(c.ready_ns - c.started_ns) / 1e6 for c in batch if c.ready_ns],
            "connect_end_ns": max([c.ready_ns for c in batch] or [0]),
        })

    # --- sending ------------------------------------------------------------------------

    def start_step(self, step, rate, senders, start_ns, end_ns):
        """Schedules this process's senders: sender s's k-th message at start + (s/S + k) * S/rate."""
        interval = senders / rate * 1e9
        self.step = (step, start_ns, end_ns, interval)
        self.sent = Counter()
        self.lag_max = 0
        self.marks = 0
        self.step_conns = [c for c in self.conns.values() if c.state == OPEN]
        self.schedule = []
        for conn in self.step_conns:
            if conn.sender is not None:
                due = int(start_ns + conn.sender / senders * interval)
                if due < end_ns:
                    self.schedule.append((due, conn.sender, 1, due, conn))
        heapq.heapify(self.schedule)
        self.cpu0 = cpu_seconds()

    def send_due(self, now):
        step, _, end_ns, interval = self.step
        schedule = self.schedule
        while schedule and schedule[0][0] <= now:
            due, sender, seq, first, conn = heapq.heappop(schedule)
            if now >= end_ns:
                continue
            self.lag_max = max(self.lag_max, now - due)
            self.write(conn, text_frame(message_text(step, sender, seq, now_ns())))
            if conn.state != OPEN:
                continue
            self.sent[sender] += 1
            nxt = int(first + seq * interval)
            if nxt < end_ns:
                heapq.heappush(schedule, (nxt, sender, seq + 1, first, conn))

    # --- analysis -------------------------------------------------------------------------

    def analyze(self, step, sent_by_room, send_end_ns):
        """Parses and checks what every receiver got since the last analysis, then forgets it.

        step None: the connect phase (history and joins: only ids are checked).
        Each receiver is checked against the messages of its room's senders.
        Returns summed figures and a latency histogram of this process.
        """
        cpu0 = cpu_seconds()
        conns = self.step_conns if step is not None else list(self.conns.values())
        hist = LatencyHistogram()
        total = Counter()
        closes = Counter()
        refs = []           # (room, stream, frames, ids, arrays) of each distinct stream parsed
        for conn in conns:
            stream = conn.leftover + conn.buf if conn.leftover else conn.buf
            sent_by_sender = sent_by_room.get(conn.room, {})
            ref = next((r for r in refs if r[0] == conn.room and r[1] == stream), None)
            if ref is not None:
                _, _, frames, ids, arrays = ref
                total["identical"] += 1
            else:
                frames = parse(stream)
                ids = np.asarray(frames.ids, dtype=np.int64)
                arrays = self.message_arrays(frames, step, sent_by_sender)
                total["parsed"] += 1
                if len(refs) < REFERENCES_MAX:
                    refs.append((conn.room, stream, frames, ids, arrays))
            total["id_violations"] += check_ids(ids, conn.last_id)
            if len(ids):
                conn.last_id = max(conn.last_id, int(ids[-1]))
            total["frames"] += len(ids)
            total["errors"] += frames.errors
            closes.update(frames.close_codes)
            if step is not None:
                counts, ends, sent_ns = arrays
                total["expected"] += sum(sent_by_sender.values())
                for key, value in counts.items():
                    total[key] += value
                if len(ends):
                    read_ends = np.frombuffer(conn.ends, dtype=np.int64) + len(conn.leftover)
                    read_times = np.frombuffer(conn.times, dtype=np.int64)
                    arrived = arrival_times(ends, read_ends, read_times)
                    hist.add(arrived - sent_ns)
                    total["in_window"] += int(np.count_nonzero(arrived <= send_end_ns))
                if conn.state == DEAD:
                    total["disconnects"] += 1
            conn.leftover = bytes(stream[frames.consumed:])
            conn.buf, conn.ends, conn.times = bytearray(), array("q"), array("q")
        self.marks = 0
        reasons = Counter(c.error for c in conns if c.state == DEAD)
        return {"receivers": len(conns), "totals": dict(total), "hist": hist.state(),
                "close_codes": dict(closes), "dead": dict(reasons),
                "analysis_cpu_s": cpu_seconds() - cpu0, "window_cpu_s": self.cpu1 - self.cpu0}

    @staticmethod
    def message_arrays(frames, step, sent_by_sender):
        """(counts, end offsets, send times) of this step's messages in one parsed stream."""
        if step is None:
            return ({}, None, None)
        steps = np.asarray(frames.msg_step, dtype=np.int64)
        current = steps == step
        senders = np.asarray(frames.msg_sender, dtype=np.int64)[current]
        seqs = np.asarray(frames.msg_seq, dtype=np.int64)[current]
        lost, dups, ooo, unexpected = check_sequences(senders, seqs, sent_by_sender)
        counts = {"delivered": int(np.count_nonzero(current)), "stale": int(len(steps) - current.sum()),
                  "lost": lost, "duplicates": dups, "out_of_order": ooo, "unexpected": unexpected}
        ends = np.asarray(frames.msg_end, dtype=np.int64)[current]
        sent_ns = np.asarray(frames.msg_sent_ns, dtype=np.int64)[current]
        return counts, ends, sent_ns
