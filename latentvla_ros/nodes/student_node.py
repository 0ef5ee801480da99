"""The distilled student as a node: camera + odometry in, LatentActions out.

Camera-anchored: every frame wakes the inference callback (a guard condition, its own
callback group, so subscriptions keep being served while the model runs), which runs
on the *newest* frame only — frames that arrived meanwhile are dropped and counted,
never queued — with the frame one latent step earlier and the odometry interpolated at
the frame's stamp. The output carries the camera stamp.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from std_msgs.msg import Float64

from latentvla_ros.core.camera_anchor import CameraAnchor
from latentvla_ros.core.latent_actions import LatentActions
from latentvla_ros.core.validation import InputError
from latentvla_ros.environment import SHIPPED_STUDENT, shipped_model
from latentvla_ros.models.checkpoint import CheckpointError
from latentvla_ros.models.student import LatentActionStudent
from latentvla_ros.msg import LatentActions as LatentActionsMsg
from latentvla_ros.planning.latentvla_planner import StudentActions
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


class StudentNode(Node):
    def __init__(self, node_name: str = "student", on_actions: Callable[[LatentActions], None] | None = None) -> None:
        super().__init__(node_name)
        declare_defaults(self, "student.param.yaml")
        apply_torch_threads(self)
        CameraInputs.validate(self)
        model_path = self.get_parameter("model_path").value or str(shipped_model(SHIPPED_STUDENT))
        step_s = self.get_parameter("latent_step_s").value
        require(step_s > 0.0, f"latent_step_s must be > 0, got {step_s}")
        try:
            student, description = LatentActionStudent.load(Path(model_path))
        except (CheckpointError, OSError) as error:
            raise ParameterError(f"model_path '{model_path}': {error}") from error
        self.actions = StudentActions(student, description["version"])
        history = student.config.history_frames
        self.history_offsets_s = tuple(-step_s * k for k in range(history - 1, -1, -1))
        tolerance = self.get_parameter("odometry_tolerance_s").value
        self.anchor = CameraAnchor(keep_s=step_s * history + 1.0, odometry_tolerance_s=tolerance)
        # Inference in its own group, woken per frame: subscriptions stay served meanwhile.
        self._wake = self.create_guard_condition(self._infer, callback_group=MutuallyExclusiveCallbackGroup())
        self.inputs = CameraInputs(self, self.anchor, self._wake.trigger)
        self.publisher = self.create_publisher(LatentActionsMsg, "~/output/latent_actions", LATENT_ACTIONS)
        self.drop_rate_publisher = self.create_publisher(Float64, "~/debug/drop_rate", STATE)
        self.processing_time = ProcessingTimePublisher(self)
        self.on_actions = on_actions  # the composed stack hands actions over in-process
        self.diagnostics = DiagnosticsPublisher(self, "latentvla_student", self._diagnose)
        self.get_logger().info(
            f"student {description['version']} from {model_path}: {history} frame(s) {step_s:.2f} s apart, "
            f"{self.inputs.transport} images"
        )

    def _infer(self) -> None:
        taken = self.anchor.take(self.history_offsets_s)
        if taken is None:
            return
        stamp_ns, frames, ego = taken
        self.processing_time.start()
        try:
            actions = self.actions(frames, ego, self.inputs.command, stamp_ns)
        except InputError as error:
            self.inputs.error(f"camera frames: {error}")
            return
        self.publisher.publish(conversions.latent_actions_to_msg(actions))
        if self.on_actions is not None:
            self.on_actions(actions)
        self.processing_time.stop()
        self.drop_rate_publisher.publish(Float64(data=self.anchor.counters.drop_rate()))

    def _diagnose(self) -> tuple[bytes, str, dict]:
        return self.inputs.diagnose(self.processing_time.last_ms)


def main(argv: list[str] | None = None) -> int:
    return run_node(StudentNode, argv, executor="single")


if __name__ == "__main__":
    sys.exit(main())
