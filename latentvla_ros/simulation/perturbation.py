"""Perturbation episodes (DART / ChauffeurNet style): push the ego off its plan, let the
expert recover.

Expert drives are mostly steady, so logs show few distinct actions and a planner
trained on them never sees how to come back from an error. At seeded random
times the ego's commands are overridden for a second or two — a sideways
offset, a heading kick, a burst of acceleration or braking — and then the
expert, replanning from wherever the ego now is, recovers. Each injection is
reported (kind, interval, magnitude) so the recorder marks it in the bag:
training may use the recovery and exclude the injection itself.

Lateral kinds are specified by what they do to the path (metres of offset,
radians of heading), not by a steering angle, so they mean the same at 8 and
at 28 m/s.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np

WHEELBASE_M = 5.0  # highway-env's vehicle length: its bicycle model's steering scale


class PerturbationKind(IntEnum):
    """Same values as ``latentvla_ros/msg/Perturbation`` constants."""

    LATERAL_OFFSET = 0
    HEADING = 1
    SPEED_UP = 2
    SLOW_DOWN = 3


@dataclass(frozen=True)
class PerturbationConfig:
    """How often and how hard; every range is (low, high), drawn uniformly."""

    mean_interval_s: float = 9.0  # exponential waiting time between injections
    first_after_s: float = 3.0  # none in an episode's first seconds (let it settle)
    min_speed_mps: float = 3.0  # no injection while (nearly) standing
    lateral_offset_m: tuple[float, float] = (0.5, 1.4)
    lateral_half_duration_s: tuple[float, float] = (0.8, 1.2)
    heading_change_rad: tuple[float, float] = (0.06, 0.16)
    heading_duration_s: tuple[float, float] = (0.4, 0.7)
    speed_up_mps2: tuple[float, float] = (1.5, 3.0)
    slow_down_mps2: tuple[float, float] = (2.0, 4.5)
    longitudinal_duration_s: tuple[float, float] = (1.0, 2.0)

    def __post_init__(self) -> None:
        if not self.mean_interval_s > 0.0:
            raise ValueError(f"mean_interval_s: expected > 0, got {self.mean_interval_s}")


@dataclass(frozen=True)
class Perturbation:
    """One injection: ``kind``, its interval [start, end) in ns of simulation time and its
    magnitude (lateral offset m, heading change rad, acceleration m/s²; signed: + left / faster)."""

    kind: PerturbationKind
    start_ns: int
    end_ns: int
    magnitude: float

    def active(self, time_ns: int) -> bool:
        return self.start_ns <= time_ns < self.end_ns

    def command(self, time_ns: int, speed_mps: float, acceleration_mps2: float, steering_rad: float):
        """The overridden (acceleration, steering) at ``time_ns`` given the tracker's own command."""
        elapsed_s = (time_ns - self.start_ns) * 1e-9
        duration_s = (self.end_ns - self.start_ns) * 1e-9
        if self.kind in (PerturbationKind.SPEED_UP, PerturbationKind.SLOW_DOWN):
            return self.magnitude, steering_rad
        speed = max(speed_mps, 1.0)
        if self.kind == PerturbationKind.HEADING:
            yaw_rate = self.magnitude / duration_s
        else:
            # An S: turn away for half the time, back for the other half; offset ≈ v r T².
            half_s = duration_s / 2.0
            yaw_rate = self.magnitude / (speed * half_s**2)
            yaw_rate = yaw_rate if elapsed_s < half_s else -yaw_rate
        return acceleration_mps2, float(np.arctan(yaw_rate * WHEELBASE_M / speed))


class PerturbationSchedule:
    """Seeded injections over a drive. Call :meth:`apply` every step with the tracker's command."""

    def __init__(self, config: PerturbationConfig, rng: np.random.Generator) -> None:
        self.config = config
        self.rng = rng
        self.current: Perturbation | None = None
        self.injected: list[Perturbation] = []
        self._next_ns: int | None = None

    def reset_episode(self, time_ns: int) -> None:
        """A new episode: nothing active, the next injection after the settling time."""
        self.current = None
        self._next_ns = time_ns + round((self.config.first_after_s + self._waiting_s()) * 1e9)

    def _waiting_s(self) -> float:
        return float(self.rng.exponential(self.config.mean_interval_s))

    def _draw(self, time_ns: int) -> Perturbation:
        config, rng = self.config, self.rng
        kind = PerturbationKind(int(rng.integers(len(PerturbationKind))))
        sign = 1.0 if rng.random() < 0.5 else -1.0
        if kind == PerturbationKind.LATERAL_OFFSET:
            magnitude = sign * rng.uniform(*config.lateral_offset_m)
            duration_s = 2.0 * rng.uniform(*config.lateral_half_duration_s)
        elif kind == PerturbationKind.HEADING:
            magnitude = sign * rng.uniform(*config.heading_change_rad)
            duration_s = rng.uniform(*config.heading_duration_s)
        elif kind == PerturbationKind.SPEED_UP:
            magnitude = rng.uniform(*config.speed_up_mps2)
            duration_s = rng.uniform(*config.longitudinal_duration_s)
        else:
            magnitude = -rng.uniform(*config.slow_down_mps2)
            duration_s = rng.uniform(*config.longitudinal_duration_s)
        return Perturbation(kind, time_ns, time_ns + round(duration_s * 1e9), float(magnitude))

    def apply(
        self, time_ns: int, speed_mps: float, acceleration_mps2: float, steering_rad: float
    ) -> tuple[float, float, Perturbation | None]:
        """(acceleration, steering, the injection that started at this step or None)."""
        if self._next_ns is None:
            self.reset_episode(time_ns)
        started = None
        if self.current is not None and not self.current.active(time_ns):
            self.current = None
            self._next_ns = time_ns + round(self._waiting_s() * 1e9)
        if self.current is None and time_ns >= self._next_ns:
            if speed_mps >= self.config.min_speed_mps:
                started = self.current = self._draw(time_ns)
                self.injected.append(started)
            else:  # try again a little later rather than inject while standing
                self._next_ns = time_ns + round(1e9)
        if self.current is None:
            return acceleration_mps2, steering_rad, None
        acceleration, steering = self.current.command(time_ns, speed_mps, acceleration_mps2, steering_rad)
        return acceleration, steering, started
