"""The teacher VLM as an (optionally offboard) node: camera + odometry in, LatentActions out.

Runs at its own rate (``rate_hz``, default 2 Hz) on the newest camera frame only; frames
that arrived meanwhile are dropped and counted. Each output is stamped with its camera
frame's stamp, so the planner can judge how fresh it is. Only topics cross machines:
launched on a GPU server beside the car, it needs nothing but the DDS link (use the
compressed camera there: ``image_transport: compressed``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node

from latentvla_ros.core.camera_anchor import CameraAnchor
from latentvla_ros.environment import SHIPPED_TEACHER, shipped_model
from latentvla_ros.models.checkpoint import CheckpointError
from latentvla_ros.msg import LatentActions as LatentActionsMsg
from latentvla_ros.planning.latentvla_planner import LATENT_STEP_S, TeacherActions
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
from latentvla_ros.ros.qos import LATENT_ACTIONS


class TeacherNode(Node):
    def __init__(self) -> None:
        super().__init__("teacher")
        declare_defaults(self, "teacher.param.yaml")
        apply_torch_threads(self)
        model_path = self.get_parameter("model_path").value or str(shipped_model(SHIPPED_TEACHER))
        rate_hz = self.get_parameter("rate_hz").value
        tolerance = self.get_parameter("odometry_tolerance_s").value
        require(rate_hz > 0.0, f"rate_hz must be > 0, got {rate_hz}")
        CameraInputs.validate(self)

        from latentvla_ros.models.teacher.teacher_model import LatentActionTeacher

        try:
            self.teacher = LatentActionTeacher.from_pretrained(Path(model_path))
        except (CheckpointError, OSError, ValueError) as error:
            raise ParameterError(f"model_path '{model_path}': {error}") from error
        self.teacher.model.to(self.get_parameter("device").value)
        self.actions = TeacherActions(self.teacher)
        config = self.teacher.config
        self.history_offsets_s = tuple(-LATENT_STEP_S * k for k in range(config.history_frames - 1, -1, -1))
        self.anchor = CameraAnchor(keep_s=LATENT_STEP_S * config.history_frames + 1.0, odometry_tolerance_s=tolerance)
        # Frames wait in the anchor for the timer: the teacher runs at its own rate.
        self.inputs = CameraInputs(self, self.anchor, on_frame=lambda: None)
        self.publisher = self.create_publisher(LatentActionsMsg, "~/output/latent_actions", LATENT_ACTIONS)
        self.processing_time = ProcessingTimePublisher(self)
        # Inference in its own group: the multi-threaded executor keeps the subscriptions (and
        # parameter services) served while the model runs.
        self.create_timer(1.0 / rate_hz, self._infer, callback_group=MutuallyExclusiveCallbackGroup())
        self.diagnostics = DiagnosticsPublisher(self, "teacher_vlm", self._diagnose)
        self.get_logger().info(
            f"teacher {self.teacher.version or '(base checkpoint)'} from {model_path}, {rate_hz:.1f} Hz, "
            f"{self.inputs.transport} images, {config.history_frames} frame(s) per input"
        )

    # --- inference ---------------------------------------------------------------------

    def _infer(self) -> None:
        taken = self.anchor.take(self.history_offsets_s)
        if taken is None:
            return
        stamp_ns, frames, ego = taken
        self.processing_time.start()
        actions = self.actions(np.stack(frames), ego, self.inputs.command, stamp_ns)
        self.publisher.publish(conversions.latent_actions_to_msg(actions))
        self.processing_time.stop()

    def _diagnose(self) -> tuple[bytes, str, dict]:
        return self.inputs.diagnose(self.processing_time.last_ms)


def main(argv: list[str] | None = None) -> int:
    return run_node(TeacherNode, argv)


if __name__ == "__main__":
    sys.exit(main())
