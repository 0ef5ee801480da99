"""The fusion planner as a node: camera + odometry + latent actions in, the trajectory out.

A fusion planner plans when the student's latent actions for a camera frame arrive: it
takes *that* frame (same stamp) and the odometry interpolated at it, so a plan always
fuses the actions computed from its own image; with ``use_teacher`` the teacher's
actions replace the student's while they are fresh (``teacher_max_age_s``; mode
UNDISTILLED). A no-fusion model plans on the newest frame. Planning runs in its own
callback group, woken by a guard condition, always on the newest input, never a backlog.

Outputs carry the camera stamp: PlannedTrajectory, nav_msgs/Path, a MarkerArray (the
path and the latent actions in words), plus processing time, pipeline latency (node
clock now - camera stamp) and /diagnostics. A watchdog on the node's clock publishes a
comfortable stop (mode SAFE_STOP) and an ERROR diagnostic while camera, odometry or
latent actions are older than ``stale_timeout_s``, and returns to planning by itself.
With ``foxglove_port`` > 0 it also streams the frame, the path and the glosses to the
Foxglove app over a WebSocket (``planning/foxglove_stream.py``; needs ``foxglove-sdk``).
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

from diagnostic_msgs.msg import DiagnosticStatus
from nav_msgs.msg import Path as PathMsg
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from std_msgs.msg import Float64
from visualization_msgs.msg import MarkerArray

from latentvla_ros.core.camera_anchor import CameraAnchor
from latentvla_ros.core.input_watchdog import InputWatchdog
from latentvla_ros.core.latent_actions import LatentActions
from latentvla_ros.core.validation import InputError
from latentvla_ros.environment import SHIPPED_LAM, SHIPPED_PLANNER, shipped_model
from latentvla_ros.models.checkpoint import CheckpointError
from latentvla_ros.models.planner import FusionPlanner
from latentvla_ros.msg import LatentActions as LatentActionsMsg
from latentvla_ros.msg import PlannedTrajectory
from latentvla_ros.planning.foxglove_stream import FoxgloveStream, FoxgloveUnavailable
from latentvla_ros.planning.latent_glosses import gloss_text, load_glosses
from latentvla_ros.planning.latentvla_planner import LatentVLAPlanner
from latentvla_ros.planning.safe_stop import safe_stop_trajectory
from latentvla_ros.ros import conversions
from latentvla_ros.ros.camera_inputs import CameraInputs
from latentvla_ros.ros.node_support import (
    DiagnosticsPublisher,
    ParameterError,
    ProcessingTimePublisher,
    apply_torch_threads,
    declare_defaults,
    require,
    run_node,
)
from latentvla_ros.ros.qos import LATENT_ACTIONS, STATE

WATCHDOG_PERIOD_S = 0.02


class PlannerNode(Node):
    def __init__(self, node_name: str = "planner", subscribe_latent_actions: bool = True) -> None:
        super().__init__(node_name)
        declare_defaults(self, "planner.param.yaml")
        apply_torch_threads(self)
        CameraInputs.validate(self)
        model_path = self.get_parameter("model_path").value or str(shipped_model(SHIPPED_PLANNER))
        gloss_path = self.get_parameter("gloss_path").value or str(shipped_model(SHIPPED_LAM + "_gloss.json"))
        self.use_teacher = bool(self.get_parameter("use_teacher").value)
        self.teacher_max_age_ns = round(self.get_parameter("teacher_max_age_s").value * 1e9)
        timeout = self.get_parameter("stale_timeout_s").value
        self.deceleration = self.get_parameter("safe_stop_deceleration_mps2").value
        require(timeout > 0.0, f"stale_timeout_s must be > 0, got {timeout}")
        require(self.deceleration > 0.0, f"safe_stop_deceleration_mps2 must be > 0, got {self.deceleration}")
        require(self.teacher_max_age_ns > 0, "teacher_max_age_s must be > 0")
        self.foxglove: FoxgloveStream | None = None
        foxglove_port = self.get_parameter("foxglove_port").value
        require(0 <= foxglove_port <= 65535, f"foxglove_port must be 0 (off) or a TCP port, got {foxglove_port}")
        try:
            model, description = FusionPlanner.load(Path(model_path))
        except (CheckpointError, OSError) as error:
            raise ParameterError(f"model_path '{model_path}': {error}") from error
        self.planner = LatentVLAPlanner(model, None, description["version"])
        self.fusion = model.config.use_fusion
        self.glosses = load_glosses(Path(gloss_path))
        tolerance = self.get_parameter("odometry_tolerance_s").value
        self.anchor = CameraAnchor(keep_s=2.0, odometry_tolerance_s=tolerance)
        required = ("camera", "odometry", "latent_actions") if self.fusion else ("camera", "odometry")
        self.watchdog = InputWatchdog(required, timeout)
        self._lock = threading.Lock()
        self._pending: LatentActions | None = None  # the newest student actions not planned on yet
        self._teacher: LatentActions | None = None
        self.counters = {"plans": 0, "safe_stops": 0, "latent_dropped": 0, "latent_without_frame": 0}
        self.safe_stop_reason = ""

        self._wake = self.create_guard_condition(self._plan, callback_group=MutuallyExclusiveCallbackGroup())
        self.inputs = CameraInputs(self, self.anchor, self._on_frame, on_seen=self._seen)
        if self.fusion and subscribe_latent_actions:
            self.create_subscription(LatentActionsMsg, "~/input/latent_actions", self._on_latent_msg, LATENT_ACTIONS)
        if self.fusion:
            self.create_subscription(
                LatentActionsMsg, "~/input/teacher_latent_actions", self._on_teacher_msg, LATENT_ACTIONS
            )
        self.trajectory_publisher = self.create_publisher(PlannedTrajectory, "~/output/trajectory", STATE)
        self.path_publisher = self.create_publisher(PathMsg, "~/output/path", STATE)
        self.marker_publisher = self.create_publisher(MarkerArray, "~/output/markers", STATE)
        self.latency_publisher = self.create_publisher(Float64, "~/debug/pipeline_latency_ms", STATE)
        self.processing_time = ProcessingTimePublisher(self)
        self.diagnostics = DiagnosticsPublisher(self, "latentvla_planner", self._diagnose)
        self.create_timer(WATCHDOG_PERIOD_S, self._watch, callback_group=MutuallyExclusiveCallbackGroup())
        self.foxglove = self._start_foxglove(foxglove_port, self.get_parameter("foxglove_host").value)
        source = "teacher/student" if self.use_teacher else "student"
        fusion = f"fusion of {source} latent actions" if self.fusion else "no fusion"
        self.get_logger().info(
            f"planner {description['version']} from {model_path}: {fusion}, safe stop after {timeout:.2f} s stale"
        )

    def _start_foxglove(self, port: int, host: str) -> FoxgloveStream | None:
        """The optional live view; it failing to start leaves planning untouched."""
        if port == 0:
            return None
        try:
            stream = FoxgloveStream(port, host, self.inputs.base_frame)
        except FoxgloveUnavailable as error:
            self.get_logger().error(f"Foxglove live view off: {error}")
            return None
        self.get_logger().info(f"Foxglove live view on ws://{host}:{stream.port}")
        return stream

    def destroy_node(self) -> None:
        if self.foxglove is not None:
            self.foxglove.close()
        super().destroy_node()

    # --- inputs ------------------------------------------------------------------------

    def _now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    def _seen(self, name: str) -> None:
        self.watchdog.mark(name, self._now_ns())

    def _on_frame(self) -> None:
        # No fusion: plan on each new frame. Fusion: latent actions may be waiting for this frame.
        self._wake.trigger()

    def _on_latent_msg(self, message: LatentActionsMsg) -> None:
        try:
            actions = conversions.latent_actions_from_msg(message)
        except InputError as error:
            self.inputs.error(f"latent actions: {error}")
            return
        self.accept_latent_actions(actions)

    def accept_latent_actions(self, actions: LatentActions) -> None:
        """The student's actions for one frame (from the topic, or in-process when composed)."""
        self._seen("latent_actions")
        with self._lock:
            if self._pending is not None:
                self.counters["latent_dropped"] += 1  # superseded before planning got to it
            self._pending = actions
        self._wake.trigger()

    def _on_teacher_msg(self, message: LatentActionsMsg) -> None:
        try:
            actions = conversions.latent_actions_from_msg(message)
        except InputError as error:
            self.inputs.error(f"teacher latent actions: {error}")
            return
        with self._lock:
            self._teacher = actions

    # --- planning ----------------------------------------------------------------------

    def _plan(self) -> None:
        actions = None
        if self.fusion:
            with self._lock:
                actions, self._pending = self._pending, None
            if actions is None:
                return
            taken = self.anchor.take_at(actions.stamp_ns)
            if taken is None:
                if self.anchor.awaiting(actions.stamp_ns):
                    with self._lock:  # keep them for the frame (or odometry) still on its way
                        if self._pending is None:
                            self._pending = actions
                    return
                self.counters["latent_without_frame"] += 1
                return
        else:
            taken = self.anchor.take()
            if taken is None:
                return
        stamp_ns, frames, ego = taken
        self.processing_time.start()
        mode = PlannedTrajectory.MODE_DISTILLED
        with self._lock:
            teacher = self._teacher
        if self.use_teacher and teacher is not None and 0 <= stamp_ns - teacher.stamp_ns <= self.teacher_max_age_ns:
            actions, mode = teacher, PlannedTrajectory.MODE_UNDISTILLED
        try:
            trajectory = self.planner.plan(frames[-1], ego, self.inputs.command, actions)
        except InputError as error:
            self.inputs.error(f"planning inputs: {error}")
            return
        tokens = actions.tokens.tolist() if actions is not None else []
        self.trajectory_publisher.publish(
            conversions.trajectory_to_msg(
                trajectory,
                stamp_ns,
                mode,
                tokens,
                self.planner.version,
                frame_id=self.inputs.base_frame,
                initial_speed_mps=ego.speed_mps,
            )
        )
        # Camera stamp -> trajectory published: the controller's view (path, markers come after).
        latency_ms = (self._now_ns() - stamp_ns) * 1e-6
        self.path_publisher.publish(conversions.trajectory_to_path(trajectory, stamp_ns, self.inputs.base_frame))
        label = gloss_text(tokens, self.glosses, steps=6) if tokens else "no fusion"
        self.marker_publisher.publish(
            conversions.trajectory_to_markers(
                trajectory, stamp_ns, self.inputs.base_frame, namespace="latentvla", label=label
            )
        )
        if self.foxglove is not None:
            self.foxglove.publish(stamp_ns, frames[-1], trajectory, label)
        self.counters["plans"] += 1
        self.processing_time.stop()
        self.latency_publisher.publish(Float64(data=latency_ms))

    # --- watchdog ----------------------------------------------------------------------

    def _watch(self) -> None:
        now_ns = self._now_ns()
        stale = self.watchdog.stale(now_ns)
        reason = f"stale: {', '.join(stale)}" if stale else ""
        changed = reason != self.safe_stop_reason
        self.safe_stop_reason = reason
        if stale:
            last = self.anchor.latest_odometry()
            speed = last.speed_mps if last is not None else 0.0
            trajectory = safe_stop_trajectory(speed, self.deceleration)
            self.trajectory_publisher.publish(
                conversions.trajectory_to_msg(
                    trajectory, now_ns, PlannedTrajectory.MODE_SAFE_STOP, frame_id=self.inputs.base_frame
                )
            )
            self.path_publisher.publish(conversions.trajectory_to_path(trajectory, now_ns, self.inputs.base_frame))
            self.counters["safe_stops"] += 1
        if changed:
            if stale:
                self.get_logger().error(f"safe stop: {reason}")
            else:
                self.get_logger().info("inputs fresh again: planning")
            self.diagnostics.publish_now()

    def _diagnose(self) -> tuple[bytes, str, dict]:
        counters = self.anchor.counters
        values = {
            **self.counters,
            "frames_received": counters.received,
            "frames_without_odometry": counters.without_odometry,
            "input_errors": self.inputs.input_errors,
            "processing_time_ms": round(self.processing_time.last_ms, 1),
        }
        if self.safe_stop_reason:
            return DiagnosticStatus.ERROR, f"safe stop ({self.safe_stop_reason})", values
        if self.inputs.input_errors:
            return DiagnosticStatus.WARN, f"malformed inputs skipped; last: {self.inputs.last_error}", values
        return DiagnosticStatus.OK, "planning", values


def main(argv: list[str] | None = None) -> int:
    return run_node(PlannerNode, argv, executor="single")


if __name__ == "__main__":
    sys.exit(main())
