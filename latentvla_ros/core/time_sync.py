"""Approximate time synchronization of several message streams (ROS-free).

The policy of ROS's ``message_filters.ApproximateTimeSynchronizer``: every
stream keeps its newest ``queue_size`` messages by stamp; when a message
arrives, the first combination (closest stamps first) that takes one message
from every stream with all stamps within ``slop`` is emitted, and the used
messages and everything older are dropped from their queues.
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
        self.slop_ns = round(slop_s * 1e9)
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
                    candidates.append([stamp_ns])
                    continue
                near = sorted((s for s in other if abs(s - stamp_ns) <= self.slop_ns), key=lambda s: abs(s - stamp_ns))
                if not near:
                    return
                candidates.append(near)
            for stamps in itertools.product(*candidates):
                if max(stamps) - min(stamps) <= self.slop_ns:
                    matched = [self.queues[i][s] for i, s in enumerate(stamps)]
                    for i, s in enumerate(stamps):
                        for older in [t for t in self.queues[i] if t <= s]:
                            del self.queues[i][older]
                    break
            else:
                return
        for callback in self.callbacks:
            callback(*matched)
