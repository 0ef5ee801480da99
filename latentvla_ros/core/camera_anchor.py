"""Camera-anchored inputs for inference nodes (ROS-free).

As Autoware's end-to-end nodes do, the camera is the anchor: a model runs on the
*newest* frame only (frames that arrived while it was busy are dropped and counted,
never queued); the frame takes the odometry *interpolated* at its stamp when states
bracket it (at most ``interpolation_gap_s`` apart), else the nearest state within a
tolerance (a frame without one is counted and skipped; a frame newer than every state
waits for the next state while odometry is flowing, since on a vehicle a frame can
overtake its odometry in the middleware); the state's acceleration is
differenced from the odometry ``acceleration_window_s`` earlier (past only, as the
training data's live ego status); and a model that wants a short history gets the
frames nearest the requested earlier stamps.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass

import numpy as np

from latentvla_ros.core.ego_state import EgoState
from latentvla_ros.core.se2 import wrap_angle

# A frame newer than every odometry state waits this long (stamp time) for its state.
ODOMETRY_WAIT_NS = 1_000_000_000


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

    def __init__(
        self,
        keep_s: float,
        odometry_tolerance_s: float,
        interpolation_gap_s: float = 0.2,
        acceleration_window_s: float = 0.25,
    ) -> None:
        self._keep_ns = round(max(keep_s, acceleration_window_s + odometry_tolerance_s) * 1e9)
        self._tolerance_ns = round(odometry_tolerance_s * 1e9)
        self._gap_ns = round(interpolation_gap_s * 1e9)
        self._window_ns = round(acceleration_window_s * 1e9)
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

    def add_odometry(self, ego_state: EgoState) -> bool:
        """Keep a state; True when the newest frame is still waiting to be taken (wake the model)."""
        with self._lock:
            if self._odometry and ego_state.stamp_ns <= self._odometry[-1].stamp_ns:
                return False
            self._odometry.append(ego_state)
            while self._odometry and self._odometry[0].stamp_ns < ego_state.stamp_ns - self._keep_ns:
                self._odometry.popleft()
            return bool(self._frames) and self._frames[-1].stamp_ns != self._last_taken_ns

    def _odometry_may_come(self, stamp_ns: int) -> bool:
        """No state at or after ``stamp_ns`` yet: none at all (start-up), or odometry flowing
        until shortly before it."""
        if not self._odometry:
            return True
        latest = self._odometry[-1].stamp_ns
        return stamp_ns - ODOMETRY_WAIT_NS <= latest < stamp_ns

    def take(self, history_offsets_s: tuple[float, ...] = (0.0,)) -> tuple[int, list[np.ndarray], EgoState] | None:
        """(stamp, frames, odometry) of the newest unprocessed frame: the frames nearest
        ``stamp + offset`` for each offset (<= 0, oldest first; the earliest kept frame where
        none is that old) and the odometry nearest the stamp. None when there is no new frame
        or no odometry within the tolerance."""
        with self._lock:
            if not self._frames or self._frames[-1].stamp_ns == self._last_taken_ns:
                return None
            newest = self._frames[-1]
            ego = self._nearest_odometry(newest.stamp_ns)
            if ego is None and self._odometry_may_come(newest.stamp_ns):
                # No odometry yet (or a wrong topic: the nodes' diagnostics say "frames but no
                # odometry" while nothing is processed); frames superseded meanwhile count as dropped.
                return None  # not taken: the next odometry (add_odometry -> True) brings it
            self.counters.dropped += max(self._pending - 1, 0)
            self._pending = 0
            self._last_taken_ns = newest.stamp_ns
            if ego is None:
                self.counters.without_odometry += 1
                return None
            history = [self._nearest_frame(newest.stamp_ns + round(offset * 1e9)) for offset in history_offsets_s]
            self.counters.processed += 1
            return newest.stamp_ns, history, ego

    def latest_odometry(self) -> EgoState | None:
        with self._lock:
            return self._odometry[-1] if self._odometry else None

    def take_at(
        self, stamp_ns: int, history_offsets_s: tuple[float, ...] = (0.0,), tolerance_ns: int = 1_000_000
    ) -> tuple[int, list[np.ndarray], EgoState] | None:
        """Like :meth:`take`, for the frame stamped ``stamp_ns`` (within ``tolerance_ns``): the
        frame another node's output (latent actions) was computed from. Frames before it that
        were never taken count as dropped. None when that frame or its odometry is missing."""
        with self._lock:
            frame = next((f for f in reversed(self._frames) if abs(f.stamp_ns - stamp_ns) <= tolerance_ns), None)
            if frame is None or (self._last_taken_ns is not None and frame.stamp_ns <= self._last_taken_ns):
                return None
            if self._nearest_odometry(frame.stamp_ns) is None and self._odometry_may_come(frame.stamp_ns):
                return None  # not taken: see :meth:`awaiting`
            newer = sum(1 for f in self._frames if f.stamp_ns > frame.stamp_ns)
            self.counters.dropped += max(self._pending - newer - 1, 0)
            self._pending = newer
            self._last_taken_ns = frame.stamp_ns
            ego = self._nearest_odometry(frame.stamp_ns)
            if ego is None:
                self.counters.without_odometry += 1
                return None
            history = [self._nearest_frame(frame.stamp_ns + round(offset * 1e9)) for offset in history_offsets_s]
            self.counters.processed += 1
            return frame.stamp_ns, history, ego

    def awaiting(self, stamp_ns: int, tolerance_ns: int = 1_000_000) -> bool:
        """Whether :meth:`take_at` may still succeed for ``stamp_ns`` later: its frame has not
        arrived yet (another node's output can overtake the frame it was computed from), or
        it has but its odometry may still come."""
        with self._lock:
            if not self._frames or self._frames[-1].stamp_ns < stamp_ns - tolerance_ns:
                return True
            frame = next((f for f in reversed(self._frames) if abs(f.stamp_ns - stamp_ns) <= tolerance_ns), None)
            if frame is None or (self._last_taken_ns is not None and frame.stamp_ns <= self._last_taken_ns):
                return False
            return self._nearest_odometry(frame.stamp_ns) is None and self._odometry_may_come(frame.stamp_ns)

    def _nearest_odometry(self, stamp_ns: int) -> EgoState | None:
        """The ego state at ``stamp_ns`` with its acceleration from the state a window before."""
        now = self._odometry_at(stamp_ns)
        if now is None:
            return None
        before = self._odometry_at(stamp_ns - self._window_ns)
        if before is None or before.stamp_ns >= now.stamp_ns:
            return now
        return now.with_acceleration_from(before)

    def _odometry_at(self, stamp_ns: int) -> EgoState | None:
        states = self._odometry
        if not states:
            return None
        later = next((k for k, state in enumerate(states) if state.stamp_ns >= stamp_ns), None)
        if later is not None and later > 0:
            a, b = states[later - 1], states[later]
            if b.stamp_ns - a.stamp_ns <= self._gap_ns:
                return interpolate_ego_state(a, b, stamp_ns)
        nearest = min(states, key=lambda state: abs(state.stamp_ns - stamp_ns))
        return nearest if abs(nearest.stamp_ns - stamp_ns) <= self._tolerance_ns else None

    def _nearest_frame(self, stamp_ns: int) -> np.ndarray:
        return min(self._frames, key=lambda frame: abs(frame.stamp_ns - stamp_ns)).image


def interpolate_ego_state(a: EgoState, b: EgoState, stamp_ns: int) -> EgoState:
    """Linear interpolation between two states bracketing ``stamp_ns`` (heading on the circle)."""
    if b.stamp_ns == a.stamp_ns:
        return a
    w = (stamp_ns - a.stamp_ns) / (b.stamp_ns - a.stamp_ns)

    def mix(x: float, y: float) -> float:
        return x + w * (y - x)

    return EgoState(
        stamp_ns=stamp_ns,
        x_m=mix(a.x_m, b.x_m),
        y_m=mix(a.y_m, b.y_m),
        yaw_rad=float(wrap_angle(a.yaw_rad + w * math.remainder(b.yaw_rad - a.yaw_rad, math.tau))),
        velocity_x_mps=mix(a.velocity_x_mps, b.velocity_x_mps),
        velocity_y_mps=mix(a.velocity_y_mps, b.velocity_y_mps),
        yaw_rate_rps=mix(a.yaw_rate_rps, b.yaw_rate_rps),
        frame_id=a.frame_id,
        child_frame_id=a.child_frame_id,
    )
