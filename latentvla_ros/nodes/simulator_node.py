"""The simulator as a ROS 2 node: the vehicle and its world.

Publishes the camera, camera info, odometry, /tf, the driving command,
ground truth and /clock (the simulation is the time source: run the other
nodes with use_sim_time). Follows the PlannedTrajectory it receives on
``~/input/trajectory`` with its trajectory tracker. Steps at ``rate_hz``
either in real time or lock-stepped: each step waits (up to
``lockstep_timeout_s`` of wall time) for the plan stamped with the state it
just published, so the loop runs as fast as the planner answers.
"""

from __future__ import annotations

import sys
import time

from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.duration import Duration
from rclpy.node import Node
from rosgraph_msgs.msg import Clock
from std_msgs.msg import String
from tf2_msgs.msg import TFMessage

from latentvla_ros import topics
from latentvla_ros.core.validation import InputError
from latentvla_ros.msg import PlannedTrajectory
from latentvla_ros.ros import conversions
from latentvla_ros.ros.node_support import (
    DiagnosticsPublisher,
    ProcessingTimePublisher,
    declare_defaults,
    require,
    run_node,
    subscribers_besides,
)
from latentvla_ros.ros.qos import LATCHED, SENSOR_OUTPUT, STATE
from latentvla_ros.ros.simulation_messages import PublishOptions, camera_static_transform, episode_msg, step_messages
from latentvla_ros.simulation.camera import CameraConfig
from latentvla_ros.simulation.controller import TrajectoryTracker
from latentvla_ros.simulation.scenarios import SCENARIO_NAMES, ScenarioConfig
from latentvla_ros.simulation.sensors import SensorSuite
from latentvla_ros.simulation.world import DrivingWorld

# Topics carrying camera images get sensor QoS; the rest state QoS.
_CAMERA_TOPICS = (topics.CAMERA_IMAGE, topics.CAMERA_IMAGE_COMPRESSED)
# Ego states kept to anchor late trajectories at the pose they were planned from.
EGO_HISTORY_LENGTH = 200
STARTUP_REPUBLISH_S = 0.5
STARTUP_REPUBLISH_STEP_NS = 1_000_000
FINAL_DELIVERY_TIMEOUT_S = 2.0


class SimulatorNode(Node):
    def __init__(self) -> None:
        super().__init__("simulator")
        declare_defaults(self, "simulator.param.yaml")
        value = self._parameter

        scenario_name = value("scenario")
        require(
            scenario_name in SCENARIO_NAMES,
            f"scenario must be one of {', '.join(SCENARIO_NAMES)}, got '{scenario_name}'",
        )
        require(value("rate_hz") > 0.0, f"rate_hz must be > 0, got {value('rate_hz')}")
        require(value("traffic_density") >= 0.0, f"traffic_density must be >= 0, got {value('traffic_density')}")
        require(
            value("duration_s") >= 0.0, f"duration_s must be >= 0 (0: run until stopped), got {value('duration_s')}"
        )
        require(1 <= value("jpeg_quality") <= 100, f"jpeg_quality must be 1..100, got {value('jpeg_quality')}")
        try:
            camera = CameraConfig(
                width_px=value("camera.width_px"),
                height_px=value("camera.height_px"),
                horizontal_fov_deg=value("camera.horizontal_fov_deg"),
                mount_x_m=value("camera.mount_x_m"),
                mount_height_m=value("camera.mount_height_m"),
                pitch_down_deg=value("camera.pitch_down_deg"),
            )
            scenario = ScenarioConfig(
                scenario_name,
                value("seed"),
                value("traffic_density"),
                value("episode_duration_s"),
                start_lateral_offset_m=value("start_lateral_offset_m"),
                start_heading_offset_rad=value("start_heading_offset_rad"),
            )
        except ValueError as error:
            require(False, str(error))
        self.world = DrivingWorld(scenario, dt_s=1.0 / value("rate_hz"))
        self.sensors = SensorSuite(camera)
        self.tracker = TrajectoryTracker()
        self.options = PublishOptions(
            raw_image=value("publish_raw_image"),
            compressed_image=value("publish_compressed_image"),
            jpeg_quality=value("jpeg_quality"),
        )
        self.lockstep = value("lockstep")
        self.lockstep_timeout_s = value("lockstep_timeout_s")
        self.startup_timeout_s = value("startup_timeout_s")
        self.startup_delay_s = value("startup_delay_s")
        self.startup_wait_topics = [topic for topic in value("startup_wait_topics") if topic]
        self.duration_s = value("duration_s")
        self.trajectory_timeout_ns = int(value("trajectory_timeout_s") * 1e9)

        self._topic_publishers = {}
        self._clock_publisher = self.create_publisher(Clock, topics.CLOCK, STATE)
        self._episode_publisher = self.create_publisher(String, topics.EPISODE, LATCHED)
        self._static_publisher = self.create_publisher(TFMessage, topics.TF_STATIC, LATCHED)
        self.create_subscription(PlannedTrajectory, "~/input/trajectory", self._on_trajectory, STATE)
        self.processing_time = ProcessingTimePublisher(self)
        self.diagnostics = DiagnosticsPublisher(self, "simulator", self._diagnostics)

        self.finished = False
        self._ready_since = None
        self._stepping_started = False
        self._ego_history = {}
        self._last_plan_stamp_ns = -1
        self._plan_for_current_step = False
        self._published_at = 0.0
        self._episode_published = -1
        self._rejected_trajectories = 0
        self._started_wall = time.perf_counter()
        self._static_publisher.publish(camera_static_transform(camera, 0))
        self._publish_state()
        period = 0.001 if self.lockstep else 1.0 / value("rate_hz")
        self._timer = self.create_timer(period, self._on_timer)
        mode = "lock-stepped" if self.lockstep else "real time"
        self.get_logger().info(
            f"simulating {scenario_name} (seed {scenario.seed}) at {value('rate_hz'):.0f} Hz, {mode}"
        )

    def _parameter(self, name: str):
        return self.get_parameter(name).value

    # --- inputs ---------------------------------------------------------------------

    def _on_trajectory(self, message: PlannedTrajectory) -> None:
        try:
            trajectory = conversions.trajectory_from_msg(message)
        except InputError as error:
            self._rejected_trajectories += 1
            self.get_logger().warn(f"ignoring trajectory: {error}", throttle_duration_sec=5.0)
            return
        stamp_ns = conversions.time_to_ns(message.header.stamp)
        ego_at_stamp = self._ego_history.get(stamp_ns)
        if ego_at_stamp is None:
            self._rejected_trajectories += 1
            self.get_logger().warn(
                f"ignoring trajectory stamped {stamp_ns * 1e-9:.2f} s: no ego state at that stamp "
                "(it must carry the stamp of the odometry/camera it was planned from)",
                throttle_duration_sec=5.0,
            )
            return
        self.tracker.set_trajectory(trajectory, ego_at_stamp)
        self._last_plan_stamp_ns = stamp_ns
        if stamp_ns == self.world.time_ns:
            self._plan_for_current_step = True

    # --- stepping -------------------------------------------------------------------

    def _startup_complete(self, now: float) -> bool:
        """Lock-step start: a planner has answered and every awaited topic has a subscriber,
        for ``startup_delay_s`` (subscriptions settle); or ``startup_timeout_s`` has passed."""
        if now - self._started_wall >= self.startup_timeout_s:
            return True
        listened = all(subscribers_besides(self, t) > 0 for t in self.startup_wait_topics)  # not just by us
        ready = self._last_plan_stamp_ns >= 0 and listened
        if not ready:
            self._ready_since = None
            return False
        if self._ready_since is None:
            self._ready_since = now
        return now - self._ready_since >= self.startup_delay_s

    def _on_timer(self) -> None:
        now = time.perf_counter()
        if self.lockstep and not self._stepping_started and not self._startup_complete(now):
            # Planners and recorders discover us after the first state went out: repeat it,
            # 1 ms later in sim time (nothing moves), so a model that ran on the first copy
            # before its downstream node was listening runs again (models skip repeated stamps).
            if now - self._published_at > STARTUP_REPUBLISH_S:
                self.world.time_ns += STARTUP_REPUBLISH_STEP_NS
                self._publish_state()
            return
        if self.lockstep and not self._plan_for_current_step and now - self._published_at < self.lockstep_timeout_s:
            return
        if not self._stepping_started:
            waited = now - self._started_wall
            awaited = ", ".join(f"{t} ({subscribers_besides(self, t)})" for t in self.startup_wait_topics) or "none"
            self.get_logger().info(f"stepping after {waited:.1f} s of start-up; awaited subscribers: {awaited}")
        self._stepping_started = True
        self.processing_time.start()
        ego = self.world.ego_state()
        if self.world.time_ns - self._last_plan_stamp_ns > self.trajectory_timeout_ns:
            self.tracker.reset()  # stale or no plan: the tracker brakes (safe stop)
        acceleration, steering = self.tracker.command(ego, self.world.dt_s)
        events = self.world.step(acceleration, steering)
        for collision in events.collisions:
            fault = "at fault" if collision.at_fault else "not at fault"
            self.get_logger().warn(f"collision with agent {collision.other_id} ({fault}) at {collision.time_s:.1f} s")
        if events.episode_started:
            self.tracker.reset()
        self._publish_state()
        self.processing_time.stop()
        if self.duration_s > 0.0 and self.world.time_s >= self.duration_s:
            self.get_logger().info(f"simulated {self.world.time_s:.1f} s; stopping")
            self._timer.cancel()
            self._wait_until_delivered()
            self.finished = True

    def _wait_until_delivered(self) -> None:
        """Exit only once reliable readers (a recorder) have acknowledged the last steps: a
        writer that is gone cannot resend what a loaded machine's loopback dropped."""
        deadline = time.monotonic() + FINAL_DELIVERY_TIMEOUT_S
        for publisher in [self._clock_publisher, self._episode_publisher, *self._topic_publishers.values()]:
            remaining_s = max(0.0, deadline - time.monotonic())
            if not publisher.wait_for_all_acked(Duration(seconds=remaining_s)):
                self.get_logger().warn(f"{publisher.topic_name}: not every reader acknowledged the last steps")
                return

    def _publish_state(self) -> None:
        stamp_ns = self.world.time_ns
        self._clock_publisher.publish(Clock(clock=conversions.ns_to_time(stamp_ns)))
        if self.world.episode_index != self._episode_published:
            self._episode_publisher.publish(episode_msg(self.world))
            self._episode_published = self.world.episode_index
        ego = self.world.ego_state()
        self._ego_history[stamp_ns] = ego
        if len(self._ego_history) > EGO_HISTORY_LENGTH:
            del self._ego_history[min(self._ego_history)]
        for topic, message in step_messages(self.world, self.sensors, self.options):
            publisher = self._topic_publishers.get(topic)
            if publisher is None:
                qos = SENSOR_OUTPUT if topic in _CAMERA_TOPICS else STATE
                publisher = self._topic_publishers[topic] = self.create_publisher(type(message), topic, qos)
            publisher.publish(message)
        self._plan_for_current_step = False
        self._published_at = time.perf_counter()

    def _diagnostics(self) -> tuple[bytes, str, dict]:
        world = self.world
        at_fault = sum(c.at_fault for c in world.collisions)
        wall_s = time.perf_counter() - self._started_wall
        values = {
            "simulated_s": f"{world.time_s:.1f}",
            "real_time_factor": f"{world.time_s / max(wall_s, 1e-9):.2f}",
            "episode": world.episode_index,
            "collisions": len(world.collisions),
            "at_fault_collisions": at_fault,
            "off_road_steps": world.off_road_steps,
            "route_completion": f"{min(1.0, world.route_progress_m() / max(world.route_path.length_m, 1e-9)):.3f}",
            "rejected_trajectories": self._rejected_trajectories,
            "processing_time_ms": f"{self.processing_time.last_ms:.1f}",
        }
        if at_fault:
            return DiagnosticStatus.WARN, f"{at_fault} at-fault collision(s)", values
        if world.time_ns - self._last_plan_stamp_ns > self.trajectory_timeout_ns:
            return DiagnosticStatus.WARN, "no fresh trajectory: braking", values
        return DiagnosticStatus.OK, "driving", values


def main(argv: list[str] | None = None) -> int:
    return run_node(SimulatorNode, argv, executor="single")  # a polling timer, no blocking callbacks


if __name__ == "__main__":
    sys.exit(main())
