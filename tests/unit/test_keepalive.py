"""The keepalive schedule (pure): each listener once per round, rounds spread evenly."""

from chat_app.keepalive import PingSchedule


def ticks(schedule, count):
    return [schedule.due() for _ in range(count)]


def test_each_listener_is_due_once_per_round_always_at_the_same_tick():
    schedule = PingSchedule(5)
    for name in "abcdefg":
        schedule.add(name)
    rounds = ticks(schedule, 15)
    for name in "abcdefg":
        at = [tick for tick, due in enumerate(rounds) if name in due]
        assert len(at) == 3
        assert at[1] - at[0] == at[2] - at[1] == 5


def test_listeners_arriving_at_once_are_spread_evenly_over_the_round():
    schedule = PingSchedule(50)
    for listener in range(1000):
        schedule.add(listener)
    sizes = [len(due) for due in ticks(schedule, 50)]
    assert sizes == [20] * 50


def test_a_discarded_listener_is_never_due_again_and_the_rest_keep_their_ticks():
    schedule = PingSchedule(3)
    for name in "abc":
        schedule.add(name)
    schedule.discard("b")
    schedule.discard("never added")
    assert ticks(schedule, 3) == [["a"], [], ["c"]]
    assert len(schedule) == 2


def test_adding_a_listener_twice_keeps_it_in_one_slot():
    schedule = PingSchedule(2)
    schedule.add("a")
    schedule.add("a")
    assert ticks(schedule, 2) == [["a"], []]
    schedule.discard("a")
    assert ticks(schedule, 2) == [[], []]
