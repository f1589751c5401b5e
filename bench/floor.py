"""Scenario `floor`: what one loopback write per client per message costs on this machine.

No server, no Redis: one process writes a small frame to each of
cfg.clients TCP sockets, cfg.steady_rate times a second, and another reads
them all with epoll. The writer's CPU per 1,000 writes is the least any
server spends on steady fan-out without holding messages back (one write per
client per message), so `steady` divided by it compares machines.
"""

import multiprocessing
import os
import select
import socket
import time

from .loop import cpu_seconds

FRAME = b"\x81\x7e\x00\x80" + b"x" * 128  # a 128-byte text frame, the size of a chat event
READER_GRACE_S = 5.0                      # the reader outlives the writes by this much


def floor(cfg, logdir):
    """Scenario 6: cfg.clients sockets, cfg.steady_rate writes to each a second, for cfg.steady_duration."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=cfg.clients)
    ready = multiprocessing.get_context("spawn").Event()
    reader = multiprocessing.get_context("spawn").Process(
        target=_read_all, args=(listener.getsockname()[1], cfg.clients,
                                cfg.steady_duration + READER_GRACE_S, ready), daemon=True)
    reader.start()
    socks = []
    try:
        socks += [listener.accept()[0] for _ in range(cfg.clients)]
        if not ready.wait(60):
            raise RuntimeError("the floor's reader did not connect its clients")
        cpu = _write_all([s.fileno() for s in socks], cfg.steady_rate, cfg.steady_duration)
    finally:
        reader.kill()
        for s in socks + [listener]:
            s.close()
    writes = len(socks) * round(cfg.steady_rate * cfg.steady_duration)
    return {"clients": cfg.clients, "rate": cfg.steady_rate, "writes": writes,
            "cpu_ms_per_1k": cpu * 1e6 / writes}


def _write_all(fds, rate, duration):
    """Writes FRAME to every fd, `rate` times a second; returns this process's CPU seconds."""
    before = cpu_seconds()
    start = time.monotonic()
    for k in range(round(rate * duration)):
        time.sleep(max(0.0, start + k / rate - time.monotonic()))
        for fd in fds:
            os.write(fd, FRAME)
    return cpu_seconds() - before


def _read_all(port, clients, seconds, ready):
    """The clients: connects them, then reads whatever arrives until `seconds` pass."""
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(clients)]
    poller = select.epoll()
    by_fd = {}
    for s in socks:
        s.setblocking(False)
        poller.register(s.fileno(), select.EPOLLIN)
        by_fd[s.fileno()] = s
    ready.set()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for fd, _ in poller.poll(0.5):
            by_fd[fd].recv(65536)
