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
# Latched: static transforms, episode descriptions (late joiners still get the last one).
LATCHED = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)
