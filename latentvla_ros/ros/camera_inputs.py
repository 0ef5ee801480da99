"""Camera-anchored inputs shared by the student and planner nodes: camera (raw or
compressed, cropped by parameter, QoS by parameter), odometry (in the configured frames)
and the driving command, stored in a CameraAnchor; bad messages are one throttled log
line and a counter, never a traceback."""

from __future__ import annotations

from collections.abc import Callable

from diagnostic_msgs.msg import DiagnosticStatus
from nav_msgs.msg import Odometry
from rclpy.node import Node
from sensor_msgs.msg import CompressedImage, Image

from latentvla_ros.core.camera_anchor import CameraAnchor
from latentvla_ros.core.driving_command import DrivingCommand
from latentvla_ros.core.image_crop import crop_frame, validate_crop
from latentvla_ros.core.validation import InputError
from latentvla_ros.msg import DrivingCommand as DrivingCommandMsg
from latentvla_ros.ros import conversions
from latentvla_ros.ros.node_support import ParameterError, require
from latentvla_ros.ros.qos import STATE, camera_qos


class CameraInputs:
    """Subscriptions for camera (raw or compressed), odometry and driving command into a
    CameraAnchor; ``on_frame`` after each frame is stored. Input errors: one throttled line."""

    @staticmethod
    def validate(node: Node):
        """(transport, QoS, crop) from the node's parameters; ParameterError (one line) if invalid.
        Nodes call it before loading a model, so a typo fails fast."""
        transport = node.get_parameter("image_transport").value
        require(transport in ("raw", "compressed"), f"image_transport must be raw or compressed, got '{transport}'")
        tolerance = node.get_parameter("odometry_tolerance_s").value
        require(tolerance > 0.0, f"odometry_tolerance_s must be > 0, got {tolerance}")
        try:
            qos = camera_qos(
                node.get_parameter("camera_qos_reliability").value, node.get_parameter("camera_qos_depth").value
            )
            crop = validate_crop(tuple(node.get_parameter("crop").value))
        except ValueError as error:
            raise ParameterError(str(error)) from error
        return transport, qos, crop

    def __init__(self, node: Node, anchor: CameraAnchor, on_frame: Callable[[], None], on_seen=None) -> None:
        transport, qos, self.crop = self.validate(node)
        self.node, self.anchor, self.on_frame = node, anchor, on_frame
        self.on_seen = on_seen or (lambda _name: None)
        self.odometry_frame = node.get_parameter("odometry_frame_id").value
        self.base_frame = node.get_parameter("base_frame_id").value
        self.command = DrivingCommand.UNKNOWN
        self.input_errors = 0
        self.last_error = ""
        if transport == "compressed":
            decode = conversions.compressed_image_from_msg
            node.create_subscription(CompressedImage, "~/input/image", lambda m: self._on_image(m, decode), qos)
        else:
            node.create_subscription(
                Image, "~/input/image", lambda m: self._on_image(m, conversions.image_from_msg), qos
            )
        node.create_subscription(Odometry, "~/input/odometry", self._on_odometry, STATE)
        node.create_subscription(DrivingCommandMsg, "~/input/driving_command", self._on_command, STATE)
        self.transport = transport

    def _on_image(self, message, decode) -> None:
        try:
            image = crop_frame(decode(message), self.crop)
            stamp_ns = conversions.time_to_ns(message.header.stamp)
        except InputError as error:
            self.error(f"camera: {error}")
            return
        self.on_seen("camera")
        self.anchor.add_frame(stamp_ns, image)
        self.on_frame()

    def _on_odometry(self, message: Odometry) -> None:
        try:
            waiting = self.anchor.add_odometry(
                conversions.odometry_to_ego_state(message, self.odometry_frame, self.base_frame)
            )
        except InputError as error:
            self.error(f"odometry: {error}")
            return
        self.on_seen("odometry")
        if waiting:  # a frame that overtook its odometry can be placed now
            self.on_frame()

    def _on_command(self, message: DrivingCommandMsg) -> None:
        try:
            self.command = conversions.driving_command_from_msg(message)
        except InputError as error:
            self.error(f"driving command: {error}")

    def error(self, text: str) -> None:
        self.input_errors += 1
        self.last_error = text
        self.node.get_logger().error(f"skipping input: {text}", throttle_duration_sec=2.0)

    def diagnose(self, processing_time_ms: float) -> tuple[bytes, str, dict]:
        """A camera-anchored model node's diagnostic status: frames in, run, dropped, errors."""
        counters = self.anchor.counters
        values = {
            "frames_received": counters.received,
            "frames_processed": counters.processed,
            "frames_dropped": counters.dropped,
            "frames_without_odometry": counters.without_odometry,
            "drop_rate": round(counters.drop_rate(), 3),
            "input_errors": self.input_errors,
            "processing_time_ms": round(processing_time_ms, 1),
        }
        if counters.received == 0:
            return DiagnosticStatus.WARN, "no camera frames yet", values
        if counters.processed == 0:
            return DiagnosticStatus.WARN, "frames but no odometry within tolerance", values
        if self.input_errors:
            return DiagnosticStatus.WARN, f"malformed inputs skipped; last: {self.last_error}", values
        return DiagnosticStatus.OK, "running", values
