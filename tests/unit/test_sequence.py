"""The sequencer, table-style: no sockets, no Redis, no greenlets."""

import pytest

from chat_app.sequence import Batch, CatchUp, Sequence, parse_published


def ev(*ids):
    """Events with these ids, as the archive and the hub hold them."""
    return [(i, b'{"id":%d}' % i) for i in ids]


def ids(events):
    return [eid for eid, _ in (events.events if isinstance(events, Batch) else events)]


def test_a_published_message_is_its_prev_its_id_and_its_event():
    assert parse_published(b'7 9 {"id":9,"text":"a b"}', 100) == (7, 9, b'{"id":9,"text":"a b"}')
    assert parse_published(b'0 9 {"id":9,"x":1}', 100) == (0, 9, b'{"id":9,"x":1}')


@pytest.mark.parametrize("data", [
    b"hello", b"", b"9 9", b"1 x {}", b'1 9 {"id":8}', b'9 9 {"id":9}', b'10 9 {"id":9}',
    b'1 9 not json', b'1 101 {"id":101}',  # beyond the newest plausible id
    b'-1 9 {"id":9}',
])
def test_anything_the_post_script_would_not_publish_is_refused(data):
    with pytest.raises(ValueError):
        parse_published(data, 100)


@pytest.mark.parametrize("last, incoming, delivered, new_last", [
    (None, [1, 2, 3], [1, 2, 3], 3),     # nothing delivered yet: everything goes
    (3, [4, 5], [4, 5], 5),
    (5, [4, 5], [], 5),                  # duplicates (a backfill already had them)
    (5, [5, 6, 7], [6, 7], 7),           # a batch that overlaps what was delivered
    (5, [], [], 5),
])
def test_accept_lets_through_only_what_is_newer_than_the_last_delivered(
        last, incoming, delivered, new_last):
    sequence = Sequence()
    sequence.last_id = last
    assert ids(sequence.accept(ev(*incoming))) == delivered
    assert sequence.last_id == new_last


@pytest.mark.parametrize("last, prev, gap", [
    (None, 12, False),   # nothing delivered here yet: listeners catch up themselves
    (5, 5, False),       # the one after the last delivered
    (5, 3, False),       # older than the last delivered: a duplicate, no gap
    (5, 0, False),       # Redis lost its data: the chain starts again
    (5, 6, True),        # 6 was published, and never seen here
])
def test_a_gap_is_a_prev_newer_than_the_last_delivered(last, prev, gap):
    sequence = Sequence()
    sequence.last_id = last
    assert sequence.gap_before(prev) is gap


@pytest.mark.parametrize("last, after, needed", [
    (None, 0, True),     # this process knows nothing of the room yet
    (None, 50, True),
    (9, 3, True),        # the listener lacks 4..9, archived
    (9, 9, False),       # up to date: no archive read
    (9, 12, False),      # ahead of this process (it read another's)
])
def test_the_archive_is_read_only_when_a_listener_may_lack_events(last, after, needed):
    sequence = Sequence()
    sequence.last_id = last
    assert sequence.needs_archive(after) is needed


@pytest.mark.parametrize("after, archived, meanwhile, replay, mark", [
    (0, [1, 2, 3], [], [1, 2, 3], 3),
    (0, [1, 2, 3], [[3, 4], [5]], [1, 2, 3, 4, 5], 5),   # overlap dropped, order kept
    (0, [1, 2], [[4]], [1, 2, 4], 4),                    # 3 is the hub's to backfill, not ours
    (7, [], [[8, 9]], [8, 9], 9),                        # nothing archived after 7 yet
    (7, [], [[6, 7]], [], 7),                            # the listener had those
    (7, [], [], [], 7),
])
def test_a_joiner_gets_the_archive_and_what_came_meanwhile_once_in_order(
        after, archived, meanwhile, replay, mark):
    catch_up = CatchUp(after)
    for live in meanwhile:
        assert catch_up.live(Batch(ev(*live))) is None  # held while the archive is read
    got = catch_up.archived(ev(*archived))
    assert (ids(got) if got else []) == replay
    assert got is None or got.replay
    assert catch_up.mark == mark


@pytest.mark.parametrize("mark, live, fresh", [
    (5, [6, 7], [6, 7]),
    (5, [4, 5], None),
    (5, [5, 6], [6]),
])
def test_after_the_archive_a_joiner_gets_only_what_it_lacks(mark, live, fresh):
    catch_up = CatchUp(0)
    catch_up.archived(ev(*range(1, mark + 1)))
    got = catch_up.live(Batch(ev(*live)))
    assert (ids(got) if got else None) == fresh


@pytest.mark.parametrize("reading, mark, last, caught_up", [
    (True, 5, 9, False),    # still reading the archive
    (False, 5, None, False),  # the room has delivered nothing here yet
    (False, 5, 5, True),
    (False, 5, 9, True),
    (False, 9, 5, False),   # the listener is ahead of this process: keep trimming
])
def test_a_joiner_gets_whole_batches_once_the_room_has_reached_it(reading, mark, last, caught_up):
    catch_up = CatchUp(mark)
    if not reading:
        catch_up.archived([])
    assert catch_up.caught_up(last) is caught_up


def test_each_encoding_of_a_batch_is_built_once():
    calls = []

    def joined(events):
        calls.append("joined")
        return b"".join(raw for _, raw in events)

    def counted(events):
        calls.append("counted")
        return b"%d" % len(events)

    batch = Batch(ev(1, 2))
    first = batch.encoded(joined)
    assert batch.encoded(joined) is first and first == b'{"id":1}{"id":2}'
    assert batch.encoded(counted) == b"2"
    assert calls == ["joined", "counted"]


@pytest.mark.parametrize("after, part", [(0, [3, 4, 5]), (3, [4, 5]), (4, [5]), (5, None), (9, None)])
def test_the_part_of_a_batch_after_an_id_is_shared(after, part):
    batch = Batch(ev(3, 4, 5))
    got = batch.since(after)
    assert (ids(got) if got else None) == part
    assert got is batch.since(after)  # one sub-batch per starting point, for every listener


def test_a_client_ahead_of_the_hub_gets_no_duplicates():
    sequence = Sequence()
    sequence.last_id = 10
    catch_up = CatchUp(12)      # it read up to 12 from an archive this process has not delivered
    catch_up.archived([])
    assert not catch_up.caught_up(sequence.last_id)
    fresh = catch_up.live(Batch(sequence.accept(ev(11, 12, 13))))
    assert ids(fresh) == [13]
    assert catch_up.caught_up(sequence.last_id) and catch_up.mark == 13
