"""bench/storm.py's pure parts: the kernel's count of connections a full listen queue turned away."""

from bench.storm import listen_overflows, parse_netstat

NETSTAT = """\
TcpExt: SyncookiesSent SyncookiesRecv ListenOverflows ListenDrops
TcpExt: 1414 0 93795 93796
IpExt: InNoRoutes InTruncatedPkts
IpExt: 0 7
"""


def test_netstat_is_read_as_a_table_of_counters():
    table = parse_netstat(NETSTAT)
    assert table["TcpExt"] == {"SyncookiesSent": 1414, "SyncookiesRecv": 0,
                               "ListenOverflows": 93795, "ListenDrops": 93796}
    assert table["IpExt"]["InTruncatedPkts"] == 7


def test_listen_overflows_are_read_from_the_kernel(tmp_path):
    path = tmp_path / "netstat"
    path.write_text(NETSTAT)
    assert listen_overflows(path) == 93795
    assert listen_overflows() >= 0  # this machine's own counter
