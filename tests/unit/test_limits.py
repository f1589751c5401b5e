"""limits.plan: open files, connections per worker and the listen backlog, from
the settings and the kernel's figures (no process limit is touched)."""

import resource

import pytest

from chat_app import limits
from chat_app.config import DEFAULT_BACKLOG, FILES_RESERVED, Settings


def test_by_default_a_process_takes_the_hard_limit_and_the_kernels_backlog():
    got = limits.plan(Settings(), hard=200000, somaxconn=16384)
    assert got == limits.Limits(open_files=200000, worker_connections=50000, backlog=16384)


def test_connections_are_capped_so_a_full_worker_stops_accepting_before_emfile():
    got = limits.plan(Settings(), hard=20000, somaxconn=4096)
    assert got.worker_connections == 20000 - FILES_RESERVED
    assert got.warnings == (f"worker_connections 50000 is capped at {20000 - FILES_RESERVED} by "
                            "the open-file limit of 20000 (CHAT_OPEN_FILES, ulimit -n)",)


def test_chat_open_files_sets_the_limit_and_caps_the_connections_with_it():
    got = limits.plan(Settings(open_files=1256, worker_connections=5000), hard=20000, somaxconn=4096)
    assert (got.open_files, got.worker_connections) == (1256, 1000)


def test_connections_within_the_files_are_kept_as_set_without_a_warning():
    got = limits.plan(Settings(worker_connections=100), hard=20000, somaxconn=4096)
    assert (got.worker_connections, got.warnings) == (100, ())


def test_open_files_above_the_hard_limit_stop_the_start():
    with pytest.raises(ValueError, match="CHAT_OPEN_FILES=30000 is above .* hard limit of 20000"):
        limits.plan(Settings(open_files=30000), hard=20000, somaxconn=4096)


def test_a_backlog_above_somaxconn_is_capped_with_a_warning():
    got = limits.plan(Settings(backlog=65536, worker_connections=100), hard=20000, somaxconn=4096)
    assert got.backlog == 4096
    assert got.warnings == ("CHAT_BACKLOG 65536 is capped at 4096 by the kernel "
                            "(raise net.core.somaxconn)",)


def test_a_smaller_backlog_is_kept():
    assert limits.plan(Settings(backlog=128), hard=20000, somaxconn=4096).backlog == 128


def test_where_somaxconn_cannot_be_read_the_backlog_is_the_default(tmp_path):
    assert limits.read_somaxconn(tmp_path / "missing") is None
    assert limits.plan(Settings(), hard=20000, somaxconn=None).backlog == DEFAULT_BACKLOG


def test_somaxconn_is_read_from_the_kernels_file(tmp_path):
    path = tmp_path / "somaxconn"
    path.write_text("16384\n")
    assert limits.read_somaxconn(path) == 16384


def test_apply_raises_the_soft_limit_to_the_plan(monkeypatch):
    set_to = []
    monkeypatch.setattr(resource, "getrlimit", lambda which: (1024, 20000))
    monkeypatch.setattr(resource, "setrlimit", lambda which, value: set_to.append(value))
    got = limits.apply(Settings(open_files=8000))
    assert got.open_files == 8000
    assert set_to == [(8000, 20000)]
