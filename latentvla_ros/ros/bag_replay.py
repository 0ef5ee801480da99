"""Play a rosbag2 into the live graph on sim time and record what the graph answers.

The player owns ``/clock``: before each message it sets the clock to the message's
stamp, then publishes the message on the topic the graph listens to. Two paces:

- **lock-step** (default): after each frame the planner plans on (a camera frame for the
  LatentVLA stack, an odometry message for odometry-only baselines) and the odometry
  that brackets it, the player waits until the trajectory stamped with that frame comes
  back (or ``answer_timeout_s`` passes: counted as missed), then goes on: as fast as
  the graph answers, and every frame is planned on.
- **real time** (``rate`` x): messages go out on the bag's own timing; the graph keeps
  up or drops frames as it would on the vehicle.

Everything played plus the graph's outputs go into one new MCAP bag (so it can be
scored, previewed and replayed again on its own). Agents, episodes, camera info and
static transforms in the source bag are copied, not played.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from latentvla_ros import topics
from latentvla_ros.data.bag_io import BagWriter, bag_topics, message_class, read_messages
from latentvla_ros.data.errors import GraphError
from latentvla_ros.ros import conversions
from latentvla_ros.ros.node_support import subscribers_besides

OUTPUT_TOPICS = {  # graph output -> type, recorded when published
    topics.TRAJECTORY: "latentvla_ros/msg/PlannedTrajectory",
    "/latentvla/student/latent_actions": "latentvla_ros/msg/LatentActions",
    "/planner/debug/processing_time_ms": "std_msgs/msg/Float64",
    "/student/debug/processing_time_ms": "std_msgs/msg/Float64",
    "/planner/debug/pipeline_latency_ms": "std_msgs/msg/Float64",
    "/diagnostics": "diagnostic_msgs/msg/DiagnosticArray",
}
COPIED_TOPICS = (topics.GROUND_TRUTH_AGENTS, topics.EPISODE, topics.CAMERA_INFO, topics.TF_STATIC)


@dataclass(frozen=True)
class PlayedTopic:
    bag_topic: str  # where the bag has it
    graph_topic: str  # where the graph listens
    plans_on: bool  # the planner plans once per message of this topic
    listeners: int = 1  # nodes that subscribe to it: the graph is ready when all do


@dataclass
class ReplayResult:
    output_bag: Path
    log_s: float = 0.0
    wall_s: float = 0.0
    played: int = 0
    awaited: int = 0  # frames the player waited for a plan on (lock-step)
    missed: int = 0  # of those, no plan within the timeout
    missed_at_s: list[float] = field(default_factory=list)  # their log times (from the first message)
    recorded: dict = field(default_factory=dict)

    @property
    def real_time_factor(self) -> float:
        return self.log_s / self.wall_s if self.wall_s > 0 else 0.0


def _stamp_ns(message, log_time_ns: int) -> int:
    header = getattr(message, "header", None)
    stamp = conversions.time_to_ns(header.stamp) if header is not None else 0
    return stamp if stamp > 0 else log_time_ns


class PlanCadence:
    """Which frames of a plan topic go out with ``plan_every_s``: one frame per interval is
    planned on (NAVSIM scores at 2 Hz), those ``history_s`` before it that the planner looks
    back to go out unplanned, the rest are skipped. Without an interval every frame is planned."""

    PLAN, HISTORY, SKIP = "plan", "history", "skip"

    def __init__(self, plan_every_s: float | None, history_s: float) -> None:
        self.every_ns = round(plan_every_s * 1e9) if plan_every_s else None
        self.history_ns = round((history_s + 0.05) * 1e9)
        self.next_plan_ns: int | None = None  # the next frame to plan on is at or after this

    def classify(self, stamp_ns: int) -> str:
        if self.every_ns is None:
            return self.PLAN
        if self.next_plan_ns is not None and stamp_ns < self.next_plan_ns:
            return self.SKIP if stamp_ns < self.next_plan_ns - self.history_ns else self.HISTORY
        self.next_plan_ns = stamp_ns + self.every_ns
        return self.PLAN


class _GraphPlayer:
    """The player's ROS side: ``/clock`` and the played topics out, the graph's outputs
    recorded into ``writer``, and which frames have been answered with a plan."""

    def __init__(self, context, played: list[PlayedTopic], types: dict, writer: BagWriter, result: ReplayResult):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from rosgraph_msgs.msg import Clock

        self._clock_type = Clock
        self.node = rclpy.create_node("latentvla_replay", context=context)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.writer, self.result = writer, result
        self.answered: set[int] = set()  # camera stamps of the plans received
        self.now_ns = 0
        reliable = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        self.clock = self.node.create_publisher(Clock, topics.CLOCK, 10)
        self.publishers = {
            p.bag_topic: self.node.create_publisher(message_class(types[p.bag_topic]), p.graph_topic, reliable)
            for p in played
        }
        for topic, type_name in OUTPUT_TOPICS.items():
            self.node.create_subscription(message_class(type_name), topic, self._recorder(topic), reliable)

    def _recorder(self, topic: str):
        def on_message(message) -> None:
            self.writer.write(topic, max(self.now_ns, 1), message)
            self.result.recorded[topic] = self.result.recorded.get(topic, 0) + 1
            if topic == topics.TRAJECTORY and message.mode != message.MODE_SAFE_STOP:
                self.answered.add(conversions.time_to_ns(message.header.stamp))

        return on_message

    def spin_until(self, condition, timeout_s: float) -> bool:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if condition():
                return True
            self.executor.spin_once(timeout_sec=0.002)
        return condition()

    def idle(self, seconds: float) -> None:
        self.spin_until(lambda: False, seconds)

    def wait_until_ready(self, played: list[PlayedTopic], internal_topics: tuple[str, ...], timeout_s: float) -> None:
        """Every node listens on every played topic and on its internal topics (models load
        before nodes subscribe), then discovery settles; GraphError naming what is missing."""

        def missing() -> list[str]:
            return [p.graph_topic for p in played if subscribers_besides(self.node, p.graph_topic) < p.listeners] + [
                topic for topic in internal_topics if subscribers_besides(self.node, topic) == 0
            ]

        if not self.spin_until(lambda: not missing(), timeout_s):
            raise GraphError(f"the planner graph never subscribed to {', '.join(missing())} in {timeout_s:.0f} s")
        self.idle(0.5)

    def publish(self, topic: str, stamp_ns: int, message) -> None:
        """The clock to the message's stamp (never back), then the message."""
        self.now_ns = max(self.now_ns, stamp_ns)
        self.clock.publish(self._clock_type(clock=conversions.ns_to_time(self.now_ns)))
        self.publishers[topic].publish(message)
        self.result.played += 1

    def await_plans(self, outstanding: list[int], keep: int, timeout_s: float, first_stamp_ns: int) -> None:
        """Wait (spinning) until at most ``keep`` of the frames in ``outstanding`` still owe a plan."""
        while len(outstanding) > keep:
            frame_stamp = outstanding.pop(0)
            self.result.awaited += 1
            if not self.spin_until(lambda s=frame_stamp: s in self.answered, timeout_s):
                self.result.missed += 1
                self.result.missed_at_s.append(round((frame_stamp - first_stamp_ns) * 1e-9, 3))

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()


def replay_bag(
    context,
    bag: Path,
    played: list[PlayedTopic],
    output_bag: Path,
    lockstep: bool = True,
    rate: float = 1.0,
    answer_timeout_s: float = 2.0,
    ready_timeout_s: float = 60.0,
    plan_every_s: float | None = None,
    history_s: float = 0.0,
    internal_topics: tuple[str, ...] = (),
    progress=None,
) -> ReplayResult:
    """Play ``played`` topics of ``bag`` into the graph (already started, on sim time).

    ``plan_every_s``: plan on one frame per interval, sending only the frames that are
    planned on and those ``history_s`` before them (:class:`PlanCadence`); odometry always
    goes out whole. ``internal_topics``: topics between the graph's own nodes (the student's
    latent actions) that must have a subscriber before play."""
    available = bag_topics(bag)
    result = ReplayResult(output_bag)
    plan_topics = {p.bag_topic for p in played if p.plans_on}
    odometry_topics = {p.bag_topic for p in played if p.bag_topic not in plan_topics}
    # An odometry-only planner answers every message (reliable, no dropping): keep a few
    # in flight. A camera planner plans on the newest frame: one at a time.
    window = 1 if odometry_topics else 8
    copied = [t for t in COPIED_TOPICS if t in available]
    cadence = PlanCadence(plan_every_s, history_s)
    outstanding: list[int] = []  # plan frames awaiting their plan
    held: list[tuple[str, int, object, bool]] = []  # frames waiting for odometry at their stamp
    with BagWriter(output_bag) as writer:
        player = _GraphPlayer(context, played, {t: kind for t, (kind, _) in available.items()}, writer, result)
        try:
            player.wait_until_ready(played, internal_topics, ready_timeout_s)
            first_log_ns, first_stamp_ns, started = None, 0, time.monotonic()
            last_log_ns = 0
            for item in read_messages(bag, [p.bag_topic for p in played] + copied):
                stamp = _stamp_ns(item.message, item.stamp_ns)
                if first_log_ns is None:
                    first_log_ns, first_stamp_ns = item.stamp_ns, stamp
                last_log_ns = item.stamp_ns
                if item.topic in copied:
                    writer.write(item.topic, item.stamp_ns, item.message)
                    continue
                plans_on = item.topic in plan_topics
                if plans_on:
                    kind = cadence.classify(stamp)
                    if kind == PlanCadence.SKIP:
                        continue
                    plans_on = kind == PlanCadence.PLAN
                writer.write(item.topic, item.stamp_ns, item.message)
                if not lockstep:  # the bag's own timing, scaled
                    delay = started + (item.stamp_ns - first_log_ns) * 1e-9 / rate - time.monotonic()
                    if delay > 0:
                        player.idle(delay)
                    player.publish(item.topic, stamp, item.message)
                    player.executor.spin_once(timeout_sec=0.0)
                elif odometry_topics and item.topic not in odometry_topics:
                    # A camera frame goes out once the odometry at its stamp has (on a vehicle odometry
                    # arrives faster than frames; a planner never sees a frame it cannot place).
                    held.append((item.topic, stamp, item.message, plans_on))
                else:
                    player.publish(item.topic, stamp, item.message)
                    if held and result.played == 1:
                        player.idle(0.1)  # the first state lands before the first frame
                    if not odometry_topics:
                        outstanding.append(stamp)  # an odometry-only planner answers this message
                    for frame in [h for h in held if h[1] <= stamp]:
                        held.remove(frame)
                        player.publish(frame[0], frame[1], frame[2])
                        if frame[3]:
                            outstanding.append(frame[1])
                    player.await_plans(outstanding, window - 1, answer_timeout_s, first_stamp_ns)
                    player.executor.spin_once(timeout_sec=0.0)
                if progress is not None:
                    progress(item.stamp_ns - first_log_ns)
            player.await_plans(outstanding, 0, answer_timeout_s, first_stamp_ns)
            player.idle(0.5)  # the last answers
            result.wall_s = time.monotonic() - started
            result.log_s = ((last_log_ns - first_log_ns) if first_log_ns is not None else 0) * 1e-9
        finally:
            player.close()
    return result
