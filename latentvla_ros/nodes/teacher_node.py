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
from diagnostic_msgs.msg import DiagnosticStatus
from nav_msgs.msg import Odometry
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import CompressedImage, Image

from latentvla_ros.core.camera_anchor import CameraAnchor
from latentvla_ros.core.driving_command import DrivingCommand
from latentvla_ros.core.latent_actions import LatentActions, LatentSource
from latentvla_ros.core.validation import InputError
from latentvla_ros.environment import SHIPPED_TEACHER, shipped_model
from latentvla_ros.models.checkpoint import CheckpointError
from latentvla_ros.msg import DrivingCommand as DrivingCommandMsg
from latentvla_ros.msg import LatentActions as LatentActionsMsg
from latentvla_ros.planning.latentvla_planner import LATENT_STEP_S
from latentvla_ros.ros import conversions
from latentvla_ros.ros.node_support import (
    DiagnosticsPublisher,
    ParameterError,
    ProcessingTimePublisher,
    declare_defaults,
    require,
    run_node,
)
from latentvla_ros.ros.qos import SENSOR_INPUT, STATE


class TeacherNode(Node):
    def __init__(self) -> None:
        super().__init__("teacher")
        declare_defaults(self, "teacher.param.yaml")
        model_path = self.get_parameter("model_path").value or str(shipped_model(SHIPPED_TEACHER))
        rate_hz = self.get_parameter("rate_hz").value
        transport = self.get_parameter("image_transport").value
        tolerance = self.get_parameter("odometry_tolerance_s").value
        self.odometry_frame = self.get_parameter("odometry_frame_id").value
        self.base_frame = self.get_parameter("base_frame_id").value
        require(rate_hz > 0.0, f"rate_hz must be > 0, got {rate_hz}")
        require(transport in ("raw", "compressed"), f"image_transport must be raw or compressed, got '{transport}'")
        require(tolerance > 0.0, f"odometry_tolerance_s must be > 0, got {tolerance}")

        from latentvla_ros.models.teacher.teacher_model import LatentActionTeacher

        try:
            self.teacher = LatentActionTeacher.from_pretrained(Path(model_path))
        except (CheckpointError, OSError, ValueError) as error:
            raise ParameterError(f"model_path '{model_path}': {error}") from error
        self.teacher.model.to(self.get_parameter("device").value)
        config = self.teacher.config
        self.history_offsets_s = tuple(-LATENT_STEP_S * k for k in range(config.history_frames - 1, -1, -1))
        self.anchor = CameraAnchor(keep_s=LATENT_STEP_S * config.history_frames + 1.0, odometry_tolerance_s=tolerance)
        self.command = DrivingCommand.UNKNOWN
        self.input_errors = 0
        self.last_error = ""

        if transport == "compressed":
            self.create_subscription(CompressedImage, "~/input/image", self._on_compressed_image, SENSOR_INPUT)
        else:
            self.create_subscription(Image, "~/input/image", self._on_image, SENSOR_INPUT)
        self.create_subscription(Odometry, "~/input/odometry", self._on_odometry, STATE)
        self.create_subscription(DrivingCommandMsg, "~/input/driving_command", self._on_command, STATE)
        self.publisher = self.create_publisher(LatentActionsMsg, "~/output/latent_actions", STATE)
        self.processing_time = ProcessingTimePublisher(self)
        # Inference in its own group: the multi-threaded executor keeps the subscriptions (and
        # parameter services) served while the model runs.
        self.create_timer(1.0 / rate_hz, self._infer, callback_group=MutuallyExclusiveCallbackGroup())
        self.diagnostics = DiagnosticsPublisher(self, "teacher_vlm", self._diagnose)
        self.get_logger().info(
            f"teacher {self.teacher.version or '(base checkpoint)'} from {model_path}, {rate_hz:.1f} Hz, "
            f"{transport} images, {config.history_frames} frame(s) per input"
        )

    # --- inputs ------------------------------------------------------------------------

    def _on_image(self, message: Image) -> None:
        self._add_frame(message, conversions.image_from_msg)

    def _on_compressed_image(self, message: CompressedImage) -> None:
        self._add_frame(message, conversions.compressed_image_from_msg)

    def _add_frame(self, message, convert) -> None:
        try:
            image = convert(message)
        except InputError as error:
            self._input_error(f"camera: {error}")
            return
        self.anchor.add_frame(conversions.time_to_ns(message.header.stamp), image)

    def _on_odometry(self, message: Odometry) -> None:
        try:
            self.anchor.add_odometry(conversions.odometry_to_ego_state(message, self.odometry_frame, self.base_frame))
        except InputError as error:
            self._input_error(f"odometry: {error}")

    def _on_command(self, message: DrivingCommandMsg) -> None:
        try:
            self.command = conversions.driving_command_from_msg(message)
        except InputError as error:
            self._input_error(f"driving command: {error}")

    def _input_error(self, text: str) -> None:
        self.input_errors += 1
        self.last_error = text
        self.get_logger().error(f"skipping input: {text}", throttle_duration_sec=2.0)

    # --- inference ---------------------------------------------------------------------

    def _infer(self) -> None:
        taken = self.anchor.take(self.history_offsets_s)
        if taken is None:
            return
        stamp_ns, frames, ego = taken
        self.processing_time.start()
        output = self.teacher.predict(np.stack(frames)[None], np.array([int(self.command)]), np.array([ego.speed_mps]))
        actions = LatentActions(
            stamp_ns=stamp_ns,  # the camera frame's: the planner judges freshness by it
            source=LatentSource.TEACHER,
            tokens=output.tokens[0].numpy(),
            probabilities=output.probabilities[0].numpy(),
            step_period_s=LATENT_STEP_S,
            model_version=self.teacher.version,
            embedding=output.action_embeddings[0].numpy(),
            visual_embedding=output.visual_embedding[0].numpy(),
        )
        self.publisher.publish(conversions.latent_actions_to_msg(actions))
        self.processing_time.stop()

    def _diagnose(self) -> tuple[bytes, str, dict]:
        counters = self.anchor.counters
        values = {
            "frames_received": counters.received,
            "frames_processed": counters.processed,
            "frames_dropped": counters.dropped,
            "frames_without_odometry": counters.without_odometry,
            "drop_rate": round(counters.drop_rate(), 3),
            "input_errors": self.input_errors,
            "processing_time_ms": round(self.processing_time.last_ms, 1),
        }
        if counters.received == 0:
            return DiagnosticStatus.WARN, "no camera frames yet", values
        if counters.processed == 0:
            return DiagnosticStatus.WARN, "frames but no odometry within tolerance", values
        if self.input_errors:
            return DiagnosticStatus.WARN, f"malformed inputs skipped; last: {self.last_error}", values
        return DiagnosticStatus.OK, "running", values


def main(argv: list[str] | None = None) -> int:
    return run_node(TeacherNode, argv)


if __name__ == "__main__":
    sys.exit(main())
