"""QoS profiles in one place, chosen to match what drivers and tools use."""

from __future__ import annotations

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

# Sensor inputs: best effort matches both reliable and best-effort camera drivers;
# depth 1 so a slow callback always sees the newest frame, never a stale queue.
SENSOR_INPUT = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)
# Sensor outputs (our simulator's camera): reliable, so RViz and ros2 bag (reliable by default) see them too.
# A publisher's depth is how much a briefly slow reliable reader (a recorder) can lag without loss;
# readers that want only the newest frame subscribe with SENSOR_INPUT.
SENSOR_OUTPUT = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)
# Plans, states and debug topics.
STATE = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)
# Latent actions between the model nodes: a node that starts (or is discovered) after the
# student's first outputs still gets the last second of them: discovery between two
# participants can lag what a third one sees, and a lock-stepped player waits for that
# first answer. Both ends must say transient local (a volatile reader gets no history).
LATENT_ACTIONS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=10,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)
# Latched: static transforms, episode descriptions (late joiners still get the last one).
LATCHED = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)


def camera_qos(reliability: str, depth: int) -> QoSProfile:
    """The camera subscription's QoS from parameters (default best effort, depth 1: the newest frame)."""
    policies = {"best_effort": ReliabilityPolicy.BEST_EFFORT, "reliable": ReliabilityPolicy.RELIABLE}
    if reliability not in policies:
        raise ValueError(f"camera_qos_reliability must be best_effort or reliable, got '{reliability}'")
    if depth < 1:
        raise ValueError(f"camera_qos_depth must be >= 1, got {depth}")
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=policies[reliability])
