"""Record topics to an MCAP rosbag2 over the live middleware.

A small stand-in for ``ros2 bag record`` where rosbag2 is not installed (the
pip path): raw (still serialized) subscriptions, each topic's durability
matched to its publishers (latched topics are received by a late joiner),
timestamps from the node clock (sim time with use_sim_time). The bag is
complete only once the node shuts down; until then it is ``<path>.partial``. On SIGINT or
SIGTERM it first writes what is still arriving (the last steps of a run that just ended).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from latentvla_ros.data.bag_io import BagError, BagWriter, message_class
from latentvla_ros.ros.node_support import require, run_node

DISCOVERY_PERIOD_S = 0.2
DISCOVERY_TIMEOUT_S = 5.0


class BagRecorderNode(Node):
    def __init__(self) -> None:
        super().__init__("bag_recorder")
        self.declare_parameter("topics", [""])
        self.declare_parameter("output_path", "")
        self.declare_parameter("storage", "mcap")
        wanted = [topic for topic in self.get_parameter("topics").value if topic]
        output = self.get_parameter("output_path").value
        storage = self.get_parameter("storage").value
        require(bool(wanted), "topics must list at least one topic")
        require(bool(output), "output_path must name the bag directory to create")
        require(storage in ("mcap", "sqlite3"), f"storage must be mcap or sqlite3, got '{storage}'")
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        try:
            self.bag = BagWriter(output, storage=storage, latched_topics=())
        except BagError as error:
            require(False, str(error))
        self.bag.__enter__()
        self.pending = set(wanted)
        self.output = output
        self._raw_subscriptions = []
        self._started = time.monotonic()
        # A steady clock: with use_sim_time the ROS clock stands still until the simulator
        # steps, and the simulator may be waiting for this recorder to subscribe.
        self._timer = self.create_timer(
            DISCOVERY_PERIOD_S, self._discover, clock=Clock(clock_type=ClockType.STEADY_TIME)
        )
        self.get_logger().info(f"recording {len(wanted)} topic(s) to {output}")

    def _discover(self) -> None:
        """Subscribe to the wanted topics in one pass once all have publishers (so a publisher
        seeing one of our subscriptions knows all are there), or to those found so far after
        DISCOVERY_TIMEOUT_S; later ones are added as they appear."""
        found = {topic: self.get_publishers_info_by_topic(topic) for topic in self.pending}
        waited_s = time.monotonic() - self._started
        if not all(found.values()) and waited_s < DISCOVERY_TIMEOUT_S:
            return
        for topic, publishers in sorted(found.items()):
            if not publishers:
                continue
            type_name = publishers[0].topic_type
            latched = any(p.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL for p in publishers)
            qos = QoSProfile(
                history=HistoryPolicy.KEEP_LAST,
                depth=100,
                reliability=ReliabilityPolicy.RELIABLE
                if all(p.qos_profile.reliability == ReliabilityPolicy.RELIABLE for p in publishers)
                else ReliabilityPolicy.BEST_EFFORT,
                durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE,
            )
            callback = self._make_writer(topic, type_name)
            self._raw_subscriptions.append(
                self.create_subscription(message_class(type_name), topic, callback, qos, raw=True)
            )
            self.pending.discard(topic)
        if not self.pending:
            self._timer.cancel()

    def _make_writer(self, topic: str, type_name: str):
        def write(serialized: bytes) -> None:
            self.bag.write_serialized(topic, type_name, self.get_clock().now().nanoseconds, serialized)

        return write

    def destroy_node(self) -> None:
        self.bag.__exit__(None, None, None)
        # print, not the node logger: after Ctrl-C the context (and /rosout) is already gone.
        print(f"[bag_recorder] wrote {self.bag.message_count} messages to {self.output}", flush=True)
        super().destroy_node()


def main(argv: list[str] | None = None) -> int:
    return run_node(BagRecorderNode, argv, executor="single", drain=lambda recorder: recorder.bag.message_count)


if __name__ == "__main__":
    sys.exit(main())
