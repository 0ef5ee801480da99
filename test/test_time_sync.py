"""The synchronizer stand-in emits what message_filters.ApproximateTimeSynchronizer (Jazzy)
emits. Each case's expected tuples are written from message_filters' rules (see
``core.time_sync``), not from running our code; where message_filters is installed the
last test also feeds both the same random streams and compares."""

import random

import pytest

from latentvla_ros.core.time_sync import ApproximateTimeMatcher

MS = 1_000_000


def _matcher(streams: int, queue_size: int, slop_s: float):
    emitted = []
    matcher = ApproximateTimeMatcher(streams, queue_size, slop_s)
    matcher.register_callback(lambda *messages: emitted.append(messages))
    return matcher, emitted


def test_a_match_removes_only_the_matched_messages():
    matcher, emitted = _matcher(2, queue_size=5, slop_s=0.02)
    matcher.add(0, 1000 * MS, "odom@1.000")
    matcher.add(1, 1050 * MS, "cam@1.050")  # 50 ms from every odometry: nothing
    assert emitted == []
    matcher.add(0, 1060 * MS, "odom@1.060")
    assert emitted == [("odom@1.060", "cam@1.050")]
    # message_filters deletes the matched pair only: the older odometry stays queued.
    assert matcher.queues == [{1000 * MS: "odom@1.000"}, {}]


def test_a_spread_equal_to_the_slop_does_not_match():
    matcher, emitted = _matcher(2, queue_size=5, slop_s=0.02)
    matcher.add(0, 1000 * MS, "a")
    matcher.add(1, 1020 * MS, "b")  # |delta| <= slop makes it a candidate, but spread < slop fails
    assert emitted == []
    matcher.add(1, 1000 * MS + 19_999_999, "c")
    assert emitted == [("a", "c")]
    assert matcher.queues == [{}, {1020 * MS: "b"}]


def test_the_slop_is_truncated_to_integer_nanoseconds():
    matcher, emitted = _matcher(2, queue_size=5, slop_s=2.9e-9)  # Duration(seconds=2.9e-9) is 2 ns
    matcher.add(0, 100, "a")
    matcher.add(1, 102, "b")  # spread 2 ns, not < 2 ns (rounding would have made the slop 3 ns)
    assert emitted == []
    matcher.add(1, 101, "c")
    assert emitted == [("a", "c")]


def test_a_late_message_evicted_on_arrival_is_not_matched_and_raises_nothing():
    matcher, emitted = _matcher(2, queue_size=2, slop_s=0.05)
    matcher.add(1, 1000 * MS, "cam@1.0")
    matcher.add(0, 2000 * MS, "odom@2.0")
    matcher.add(0, 3000 * MS, "odom@3.0")
    matcher.add(0, 1000 * MS, "odom@1.0 late")  # the oldest of a full queue: dropped at once
    assert emitted == []
    assert matcher.queues == [{2000 * MS: "odom@2.0", 3000 * MS: "odom@3.0"}, {1000 * MS: "cam@1.0"}]


def test_duplicates_replace_the_queued_message_and_match_again_after_a_match():
    matcher, emitted = _matcher(2, queue_size=5, slop_s=0.02)
    matcher.add(0, 1000 * MS, "odom first copy")
    matcher.add(0, 1000 * MS, "odom second copy")  # same stamp: replaces
    matcher.add(1, 1005 * MS, "cam@1.005")
    assert emitted == [("odom second copy", "cam@1.005")]
    matcher.add(1, 1005 * MS, "cam@1.005 again")  # nothing near it is queued any more
    assert emitted == [("odom second copy", "cam@1.005")]
    matcher.add(0, 1000 * MS, "odom third copy")  # a re-sent stamp pairs with the re-sent frame
    assert emitted[-1] == ("odom third copy", "cam@1.005 again")


def test_out_of_order_arrivals():
    matcher, emitted = _matcher(2, queue_size=5, slop_s=0.02)
    matcher.add(0, 2000 * MS, "odom@2.0")
    matcher.add(0, 1000 * MS, "odom@1.0")  # older than what is queued: still a candidate
    matcher.add(1, 1005 * MS, "cam@1.005")
    assert emitted == [("odom@1.0", "cam@1.005")]
    matcher.add(1, 1990 * MS, "cam@1.990")
    assert emitted[-1] == ("odom@2.0", "cam@1.990")


def test_the_first_combination_in_product_order_that_fits_wins():
    # Three streams, slop 50 ms. Stream A holds 1.08 then 1.00 (both 40 ms from C's 1.04:
    # a tie, kept in arrival order); B holds 1.01. Product order tries (A 1.08, B 1.01,
    # C 1.04) first: spread 70 ms, too wide; then (A 1.00, B 1.01, C 1.04): 40 ms, emitted.
    matcher, emitted = _matcher(3, queue_size=5, slop_s=0.05)
    matcher.add(0, 1080 * MS, "a@1.08")
    matcher.add(0, 1000 * MS, "a@1.00")
    matcher.add(1, 1010 * MS, "b@1.01")
    assert emitted == []  # C empty
    matcher.add(2, 1040 * MS, "c@1.04")
    assert emitted == [("a@1.00", "b@1.01", "c@1.04")]
    assert matcher.queues == [{1080 * MS: "a@1.08"}, {}, {}]


def test_a_dropped_stream_emits_nothing_and_queues_stay_bounded():
    matcher, emitted = _matcher(2, queue_size=3, slop_s=0.02)
    for k in range(20):
        matcher.add(0, k * 100 * MS, f"odom{k}")
    assert emitted == []
    assert sorted(matcher.queues[0]) == [1700 * MS, 1800 * MS, 1900 * MS]


def test_random_streams_never_raise_and_every_emitted_tuple_fits_the_slop():
    rng = random.Random(7)
    for trial in range(200):
        streams = rng.randint(2, 3)
        slop_ns = rng.choice([5, 20, 50]) * MS
        matcher, emitted = _matcher(streams, queue_size=rng.randint(1, 4), slop_s=slop_ns / 1e9)
        for _ in range(60):
            stream = rng.randrange(streams)
            stamp = rng.randrange(0, 400) * MS + rng.choice([0, 1, slop_ns])
            matcher.add(stream, stamp, (stream, stamp, trial))
            assert all(len(queue) <= matcher.queue_size for queue in matcher.queues)
        for messages in emitted:
            assert [m[0] for m in messages] == list(range(streams))
            stamps = [m[1] for m in messages]
            assert max(stamps) - min(stamps) < slop_ns


def test_same_tuples_as_the_real_message_filters():
    message_filters = pytest.importorskip("message_filters")  # a ROS 2 install; not on the pip path
    from builtin_interfaces.msg import Time
    from std_msgs.msg import Header

    class Stamped:
        def __init__(self, stream: int, stamp_ns: int) -> None:
            self.header = Header(stamp=Time(sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000))
            self.key = (stream, stamp_ns)

    class Source(message_filters.SimpleFilter):
        pass

    rng = random.Random(11)
    for _ in range(50):
        streams, queue_size, slop_s = rng.randint(2, 3), rng.randint(1, 4), rng.choice([0.005, 0.02, 0.05])
        sources = [Source() for _ in range(streams)]
        real = message_filters.ApproximateTimeSynchronizer(sources, queue_size, slop_s)
        real_out: list = []
        real.registerCallback(lambda *m, out=real_out: out.append(tuple(x.key for x in m)))
        ours, ours_out = _matcher(streams, queue_size, slop_s)
        for _ in range(80):
            stream, stamp = rng.randrange(streams), rng.randrange(0, 300) * MS
            message = Stamped(stream, stamp)
            sources[stream].signalMessage(message)
            ours.add(stream, stamp, message)
        assert [tuple(m.key for m in out) for out in ours_out] == real_out
