"""Which inputs went stale (ROS-free): the planner's safe-stop trigger.

Each input is marked when it arrives, on the node's clock (sim time under
``use_sim_time``); an input never seen, or last seen longer ago than the timeout, is
stale. The planner publishes a safe stop while any required input is stale and returns
to normal by itself once all are fresh again.
"""

from __future__ import annotations

import threading


class InputWatchdog:
    def __init__(self, names: tuple[str, ...], timeout_s: float) -> None:
        if timeout_s <= 0.0:
            raise ValueError(f"timeout must be > 0 s, got {timeout_s}")
        self.names = tuple(names)
        self.timeout_ns = round(timeout_s * 1e9)
        self._last_ns: dict[str, int] = {}
        self._lock = threading.Lock()

    def mark(self, name: str, now_ns: int) -> None:
        with self._lock:
            self._last_ns[name] = now_ns

    def stale(self, now_ns: int) -> list[str]:
        """The inputs not seen within the timeout before ``now_ns`` (in the order given)."""
        with self._lock:
            return [
                name
                for name in self.names
                if name not in self._last_ns or now_ns - self._last_ns[name] > self.timeout_ns
            ]

    def age_s(self, name: str, now_ns: int) -> float | None:
        with self._lock:
            last = self._last_ns.get(name)
        return None if last is None else (now_ns - last) * 1e-9
