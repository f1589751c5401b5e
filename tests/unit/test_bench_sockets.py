"""The sockets benchmark's pure parts: the client count the limits allow, the verdict
line for the target, each client's source address, and the frame walk that finds pings."""

from bench.sockets import (CLIENT_FD_MARGIN, SERVER_FD_MARGIN, all_joined_and_delivered, blocked,
                           client_address, client_procs, expected_deliveries, open_files_limit,
                           plan, port_range, room_members, scan_frames, small_enough)

PORTS = 28_232          # 32768-60999, Linux's default local port range
PLENTY = 2_000_000      # system files free


def test_the_open_file_hard_limit_decides_the_count_and_the_line_shows_it():
    p = plan(100_000, 2, 20_000, 20_000, PORTS, PLENTY)
    per_worker = 20_000 - SERVER_FD_MARGIN
    assert p["clients"] == 2 * per_worker
    assert p["binding"] == "open files"
    assert p["per_worker"] == per_worker
    assert blocked(p) == (f"100,000 sockets: blocked: open-file hard limit 20,000 per process allows "
                          f"2 × {per_worker:,} (a worker's own files aside) = {2 * per_worker:,}")


def test_worker_connections_under_the_files_decide_the_count():
    p = plan(100_000, 2, 1_048_576, 30_000, PORTS, PLENTY)
    assert (p["clients"], p["binding"], p["per_worker"]) == (60_000, "worker_connections", 30_000)
    assert blocked(p).endswith("gunicorn worker_connections 30,000 allows 2 × 30,000 = 60,000")


def test_a_tie_between_files_and_worker_connections_is_put_on_the_files():
    p = plan(100_000, 2, 20_000, 20_000 - SERVER_FD_MARGIN, PORTS, PLENTY)
    assert p["binding"] == "open files"


def test_the_local_ports_of_the_source_addresses_and_the_system_files_are_limits_too():
    ports = plan(100_000, 2, 1_048_576, 100_000, 10_000, PLENTY)
    assert (ports["clients"], ports["binding"]) == (40_000, "local ports")
    assert "4 source addresses × 10,000 = 40,000" in blocked(ports)
    files = plan(100_000, 2, 1_048_576, 100_000, PORTS, 50_001)
    assert (files["clients"], files["binding"]) == (25_000, "file-max")


def test_a_target_within_every_limit_is_run_as_asked():
    p = plan(400, 2, 20_000, 20_000, PORTS, PLENTY)
    assert (p["clients"], p["binding"]) == (400, None)
    assert blocked(p) == "400 sockets: within the limits"


def test_clients_take_the_four_loopback_addresses_in_turn():
    assert [client_address(i) for i in range(6)] == [
        "127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.1", "127.0.0.2"]


def test_client_processes_are_added_when_one_could_not_hold_its_share():
    per_process = 20_000 - CLIENT_FD_MARGIN
    assert client_procs(39_000, 4, 20_000) == 4
    assert client_procs(5 * per_process, 4, 20_000) == 5
    assert client_procs(5 * per_process + 1, 4, 20_000) == 6


def test_deliveries_expected_are_the_members_of_the_rooms_with_a_message():
    assert [room_members(1005, 10, r) for r in range(10)] == [101] * 5 + [100] * 5
    assert expected_deliveries(1005, 10, 10) == 1005
    assert expected_deliveries(39_744, 397, 100) == 100 * 100 + 44   # 39,744 = 397 × 100 + 44


def test_the_limits_and_the_port_range_are_read_from_proc():
    limits = ("Limit                     Soft Limit           Hard Limit           Units     \n"
              "Max processes             127480               127480               processes \n"
              "Max open files            1024                 20000                files     \n")
    assert open_files_limit(limits) == (1024, 20_000)
    assert open_files_limit("Max processes 1 1 processes\n") is None
    assert port_range("32768\t60999\n") == PORTS


def frames(*parts):
    """Server frames (unmasked): (opcode, payload length) each."""
    out = bytearray()
    for opcode, length in parts:
        out.append(0x80 | opcode)
        if length < 126:
            out.append(length)
        elif length < 1 << 16:
            out += bytes((126,)) + length.to_bytes(2, "big")
        else:
            out += bytes((127,)) + length.to_bytes(8, "big")
        out += b"\x89\x00" * (length // 2) + b"x" * (length % 2)  # payloads that look like pings
    return bytes(out)


def walk(data, cuts):
    """scan_frames over data read in pieces ending at these offsets: total pings and their bytes."""
    skip, partial, pings, ping_bytes, start = 0, b"", 0, 0, 0
    for end in [*cuts, len(data)]:
        n, b, skip, partial = scan_frames(memoryview(data)[start:end], skip, partial)
        pings, ping_bytes, start = pings + n, ping_bytes + b, end
    return pings, ping_bytes, skip, partial


def test_pings_are_found_by_frame_headers_not_by_bytes_inside_payloads():
    data = frames((1, 40), (9, 0), (1, 35_072), (9, 0), (1, 70_000), (8, 2), (9, 4))
    assert walk(data, []) == (3, 2 + 2 + 6, 0, b"")


def test_a_read_may_end_anywhere_in_a_frame_or_its_header():
    data = frames((1, 200), (9, 0), (1, 70_000), (9, 0), (1, 3))
    expected = (2, 4, 0, b"")
    for cut in range(1, len(data)):
        assert walk(data, [cut]) == expected, cut
    assert walk(data, list(range(1, len(data)))) == expected   # a byte at a time


def test_an_incomplete_frame_is_carried_to_the_next_read():
    data = frames((1, 300))
    assert walk(data[:3], []) == (0, 0, 0, data[:3])        # inside the 16-bit length
    assert walk(data[:10], []) == (0, 0, 300 - 6, b"")      # inside the payload


def result(**changes):
    r = {"clients": 100, "joined": 100, "handshake_failures": 0, "not_connected": 0, "disconnects": 0,
         "messages": 1, "messages_sent": 1, "deliveries_expected": 100, "deliveries_made": 100,
         "lost": 0, "duplicates": 0, "srv_rss_kb_per_client": 19.9}
    r.update(changes)
    return r


def test_the_verdicts():
    assert all_joined_and_delivered(result())
    for bad in ({"joined": 99}, {"handshake_failures": 1}, {"not_connected": 1}, {"disconnects": 1},
                {"messages_sent": 0},
                {"deliveries_made": 99}, {"lost": 1}):
        assert not all_joined_and_delivered(result(**bad)), bad
    assert small_enough(result())
    assert not small_enough(result(srv_rss_kb_per_client=20.1))
