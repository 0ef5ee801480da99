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

    ``plan_every_s``: plan on one frame per interval (NAVSIM scores at 2 Hz), sending only
    the frames that are planned on and those ``history_s`` before them that the planner
    looks back to; odometry always goes out whole. ``internal_topics``: topics between the
    graph's own nodes (the student's latent actions) that must have a subscriber before play."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from rosgraph_msgs.msg import Clock

    available = bag_topics(bag)
    node = rclpy.create_node("latentvla_replay", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    result = ReplayResult(output_bag)
    answered: set[int] = set()
    reliable = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
    clock = node.create_publisher(Clock, topics.CLOCK, 10)
    publishers = {
        p.bag_topic: node.create_publisher(message_class(available[p.bag_topic][0]), p.graph_topic, reliable)
        for p in played
    }
    now_ns = [0]
    with BagWriter(output_bag) as writer:

        def record(topic: str):
            def on_message(message) -> None:
                writer.write(topic, max(now_ns[0], 1), message)
                result.recorded[topic] = result.recorded.get(topic, 0) + 1
                if topic == topics.TRAJECTORY and message.mode != message.MODE_SAFE_STOP:
                    answered.add(conversions.time_to_ns(message.header.stamp))

            return on_message

        for topic, type_name in OUTPUT_TOPICS.items():
            node.create_subscription(message_class(type_name), topic, record(topic), reliable)

        def spin_until(condition, timeout_s: float) -> bool:
            end = time.monotonic() + timeout_s
            while time.monotonic() < end:
                if condition():
                    return True
                executor.spin_once(timeout_sec=0.002)
            return condition()

        def graph_subscribers(topic: str) -> int:
            # Not the player's own recorders (it records the internal topics too).
            return sum(1 for info in node.get_subscriptions_info_by_topic(topic) if info.node_name != node.get_name())

        # The graph is ready when every node listens on every played topic and on its own
        # internal topics (models load before nodes subscribe), then discovery settles.
        ready = spin_until(
            lambda: (
                all(graph_subscribers(p.graph_topic) >= p.listeners for p in played)
                and all(graph_subscribers(topic) > 0 for topic in internal_topics)
            ),
            ready_timeout_s,
        )
        if not ready:
            missing = [p.graph_topic for p in played if graph_subscribers(p.graph_topic) < p.listeners]
            missing += [topic for topic in internal_topics if graph_subscribers(topic) == 0]
            node.destroy_node()
            raise GraphError(f"the planner graph never subscribed to {', '.join(missing)} in {ready_timeout_s:.0f} s")
        spin_until(lambda: False, 0.5)
        plan_topics = {p.bag_topic for p in played if p.plans_on}
        odometry_topics = {p.bag_topic for p in played if p.bag_topic not in plan_topics}
        # An odometry-only planner answers every message (reliable, no dropping): keep a few
        # in flight. A camera planner plans on the newest frame: one at a time.
        window = 1 if odometry_topics else 8
        copied = [t for t in COPIED_TOPICS if t in available]
        outstanding: list[int] = []  # plan frames awaiting their plan
        next_plan_ns = None  # with plan_every_s: the next frame to plan on at or after this

        def await_plans(keep: int) -> None:
            """Wait (spinning) until at most ``keep`` plans are still owed."""
            while len(outstanding) > keep:
                frame_stamp = outstanding.pop(0)
                result.awaited += 1
                if not spin_until(lambda s=frame_stamp: s in answered, answer_timeout_s):
                    result.missed += 1
                    result.missed_at_s.append(round((frame_stamp - (first_stamp_ns or frame_stamp)) * 1e-9, 3))

        def publish(topic: str, stamp: int, message) -> None:
            now_ns[0] = max(now_ns[0], stamp)
            clock.publish(Clock(clock=conversions.ns_to_time(now_ns[0])))
            publishers[topic].publish(message)
            result.played += 1

        held: list[tuple[str, int, object, bool]] = []  # frames waiting for odometry at their stamp
        first_log_ns, first_stamp_ns, started = None, None, time.monotonic()
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
            if plans_on and plan_every_s and next_plan_ns is not None and stamp < next_plan_ns:
                # Between evaluation points: only the frames the planner's history needs go out.
                if stamp < next_plan_ns - round((history_s + 0.05) * 1e9):
                    continue
                plans_on = False
            if plans_on and plan_every_s:
                next_plan_ns = stamp + round(plan_every_s * 1e9)
            writer.write(item.topic, item.stamp_ns, item.message)
            if not lockstep:  # the bag's own timing, scaled
                delay = started + (item.stamp_ns - first_log_ns) * 1e-9 / rate - time.monotonic()
                if delay > 0:
                    spin_until(lambda: False, delay)
                publish(item.topic, stamp, item.message)
                executor.spin_once(timeout_sec=0.0)
            elif odometry_topics and item.topic not in odometry_topics:
                # A camera frame goes out once the odometry at its stamp has (on a vehicle odometry
                # arrives faster than frames; a planner never sees a frame it cannot place).
                held.append((item.topic, stamp, item.message, plans_on))
            else:
                publish(item.topic, stamp, item.message)
                if held and result.played == 1:
                    spin_until(lambda: False, 0.1)  # the first state lands before the first frame
                if not odometry_topics:
                    outstanding.append(stamp)  # an odometry-only planner answers this message
                for frame in [h for h in held if h[1] <= stamp]:
                    held.remove(frame)
                    publish(frame[0], frame[1], frame[2])
                    if frame[3]:
                        outstanding.append(frame[1])
                await_plans(keep=window - 1)
                executor.spin_once(timeout_sec=0.0)
            if progress is not None:
                progress(item.stamp_ns - first_log_ns)
        await_plans(keep=0)
        spin_until(lambda: False, 0.5)  # the last answers
        result.wall_s = time.monotonic() - started
        result.log_s = ((last_log_ns - first_log_ns) if first_log_ns is not None else 0) * 1e-9
    executor.shutdown()
    node.destroy_node()
    return result
