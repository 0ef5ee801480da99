"""Approximate time synchronization of several message streams (ROS-free).

The exact policy of ``message_filters.ApproximateTimeSynchronizer`` (ROS 2 Jazzy,
``src/message_filters/__init__.py`` in ros2/message_filters), so the stand-in emits the
same tuples as the real package:

1. the new message goes into its stream's queue, keyed by stamp (a repeated stamp
   replaces the earlier message); while the queue holds more than ``queue_size``
   messages the *oldest stamp* is dropped — possibly the message that just arrived;
2. in every *other* queue the stamps within ``slop`` of the new stamp (|difference| <=
   slop) are the candidates, nearest first (ties in arrival order); a queue without
   one ends the attempt;
3. the combinations are tried in ``itertools.product`` order of those lists, the new
   stamp in its stream's place; the first whose spread (newest - oldest) is *strictly*
   smaller than the slop and whose messages are all still queued is emitted;
4. only the emitted messages leave their queues (older unmatched ones stay).

The slop is truncated to integer nanoseconds as ``rclpy.duration.Duration(seconds=...)``
does. Callbacks run under the matcher's lock, as message_filters runs them: keep them
short (store, signal, return) and do the work elsewhere.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable


class ApproximateTimeMatcher:
    """``add(stream_index, stamp_ns, message)``; matched tuples go to the callbacks."""

    def __init__(self, stream_count: int, queue_size: int, slop_s: float) -> None:
        if stream_count < 1 or queue_size < 1 or slop_s < 0.0:
            raise ValueError(
                f"need streams >= 1, queue_size >= 1, slop >= 0; got {stream_count}, {queue_size}, {slop_s}"
            )
        self.queues: list[dict[int, object]] = [{} for _ in range(stream_count)]
        self.queue_size = queue_size
        self.slop_ns = int(slop_s * 1_000_000_000)  # rclpy Duration(seconds=...) truncates
        self.callbacks: list[Callable[..., None]] = []
        self._lock = threading.Lock()

    def register_callback(self, callback: Callable[..., None]) -> None:
        self.callbacks.append(callback)

    def add(self, stream_index: int, stamp_ns: int, message: object) -> None:
        with self._lock:
            queue = self.queues[stream_index]
            queue[stamp_ns] = message
            while len(queue) > self.queue_size:
                del queue[min(queue)]
            candidates = []
            for index, other in enumerate(self.queues):
                if index == stream_index:
                    continue
                near = [s for s in other if abs(s - stamp_ns) <= self.slop_ns]
                if not near:
                    return
                candidates.append(sorted(near, key=lambda s: abs(s - stamp_ns)))  # stable: arrival order on ties
            for others in itertools.product(*candidates):
                stamps = [*others[:stream_index], stamp_ns, *others[stream_index:]]
                if max(stamps) - min(stamps) >= self.slop_ns:
                    continue
                if any(s not in q for q, s in zip(self.queues, stamps, strict=True)):
                    continue  # e.g. the new message itself was the oldest and left its full queue
                matched = [q.pop(s) for q, s in zip(self.queues, stamps, strict=True)]
                for callback in self.callbacks:
                    callback(*matched)
                return
