"""Camera-anchored inputs for inference nodes (ROS-free).

As Autoware's end-to-end nodes do, the camera is the anchor: a model runs on the
*newest* frame only (frames that arrived while it was busy are dropped and counted,
never queued), the frame takes the odometry nearest its stamp within a tolerance (a
frame without one is counted and skipped), and a model that wants a short history gets
the frames nearest the requested earlier stamps.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

import numpy as np

from latentvla_ros.core.ego_state import EgoState


@dataclass(frozen=True)
class StampedFrame:
    stamp_ns: int
    image: np.ndarray  # (H, W, 3) uint8 RGB


@dataclass
class AnchorCounters:
    received: int = 0
    processed: int = 0
    dropped: int = 0  # superseded by a newer frame before the model got to them
    stale: int = 0  # older than a frame already seen (out of order, duplicates)
    without_odometry: int = 0

    def drop_rate(self) -> float:
        """Share of received frames the model never ran on (dropped or unpaired)."""
        return (self.dropped + self.without_odometry) / self.received if self.received else 0.0


class CameraAnchor:
    """Thread-safe: subscriptions call :meth:`add_frame` / :meth:`add_odometry`; the
    inference loop calls :meth:`take`."""

    def __init__(self, keep_s: float, odometry_tolerance_s: float) -> None:
        self._keep_ns = round(keep_s * 1e9)
        self._tolerance_ns = round(odometry_tolerance_s * 1e9)
        self._frames: deque[StampedFrame] = deque()
        self._odometry: deque[EgoState] = deque()
        self._last_taken_ns: int | None = None
        self._pending = 0  # frames added since the last take
        self._lock = threading.Lock()
        self.counters = AnchorCounters()

    def add_frame(self, stamp_ns: int, image: np.ndarray) -> None:
        with self._lock:
            self.counters.received += 1
            if self._frames and stamp_ns <= self._frames[-1].stamp_ns:
                self.counters.stale += 1
                return
            self._frames.append(StampedFrame(stamp_ns, image))
            self._pending += 1
            while self._frames and self._frames[0].stamp_ns < stamp_ns - self._keep_ns:
                self._frames.popleft()

    def add_odometry(self, ego_state: EgoState) -> None:
        with self._lock:
            if self._odometry and ego_state.stamp_ns <= self._odometry[-1].stamp_ns:
                return
            self._odometry.append(ego_state)
            while self._odometry and self._odometry[0].stamp_ns < ego_state.stamp_ns - self._keep_ns:
                self._odometry.popleft()

    def take(self, history_offsets_s: tuple[float, ...] = (0.0,)) -> tuple[int, list[np.ndarray], EgoState] | None:
        """(stamp, frames, odometry) of the newest unprocessed frame: the frames nearest
        ``stamp + offset`` for each offset (<= 0, oldest first; the earliest kept frame where
        none is that old) and the odometry nearest the stamp. None when there is no new frame
        or no odometry within the tolerance."""
        with self._lock:
            if not self._frames or self._frames[-1].stamp_ns == self._last_taken_ns:
                return None
            newest = self._frames[-1]
            self.counters.dropped += max(self._pending - 1, 0)
            self._pending = 0
            self._last_taken_ns = newest.stamp_ns
            ego = self._nearest_odometry(newest.stamp_ns)
            if ego is None:
                self.counters.without_odometry += 1
                return None
            history = [self._nearest_frame(newest.stamp_ns + round(offset * 1e9)) for offset in history_offsets_s]
            self.counters.processed += 1
            return newest.stamp_ns, history, ego

    def _nearest_odometry(self, stamp_ns: int) -> EgoState | None:
        if not self._odometry:
            return None
        nearest = min(self._odometry, key=lambda state: abs(state.stamp_ns - stamp_ns))
        return nearest if abs(nearest.stamp_ns - stamp_ns) <= self._tolerance_ns else None

    def _nearest_frame(self, stamp_ns: int) -> np.ndarray:
        return min(self._frames, key=lambda frame: abs(frame.stamp_ns - stamp_ns)).image
