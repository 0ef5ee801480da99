"""Live view for a teammate without ROS (ROS-free): camera, planned path and glosses
streamed over the Foxglove WebSocket protocol with the ``foxglove-sdk`` package.

Optional: the planner starts it only when its ``foxglove_port`` parameter is > 0, and
only then imports the SDK, so a Jazzy install without ``foxglove-sdk`` loses nothing
else. The server binds to loopback by default (a teammate reaches it through an SSH
tunnel, not an open port on the vehicle). Channels use Foxglove's own schemas, so the
app's Image and 3D panels show them with no ROS message definitions:

- ``/latentvla/camera``        ``foxglove.RawImage`` (rgb8), the frame planned on
- ``/latentvla/planned_path``  ``foxglove.PosesInFrame`` in the base frame
- ``/latentvla/markers``       ``foxglove.SceneUpdate``: the path as a line and the
                                latent actions' glosses as a text label
"""

from __future__ import annotations

import math

import numpy as np

from latentvla_ros.core.trajectory import Trajectory

CAMERA_TOPIC = "/latentvla/camera"
PATH_TOPIC = "/latentvla/planned_path"
MARKERS_TOPIC = "/latentvla/markers"


class FoxgloveUnavailable(RuntimeError):
    """foxglove-sdk is not installed, or the server could not start."""


class FoxgloveStream:
    def __init__(self, port: int, host: str = "127.0.0.1", frame_id: str = "base_link") -> None:
        try:
            import foxglove
            from foxglove import messages
        except ImportError as error:
            raise FoxgloveUnavailable("foxglove_port is set but foxglove-sdk is not installed") from error
        self._messages = messages
        self.frame_id = frame_id
        self._context = foxglove.Context()
        try:
            self._server = foxglove.start_server(name="latentvla", host=host, port=port, context=self._context)
        except Exception as error:  # the SDK raises its own error type for a port in use
            raise FoxgloveUnavailable(f"Foxglove server on {host}:{port}: {error}") from error
        self.port = self._server.port
        self._camera = foxglove.channels.RawImageChannel(CAMERA_TOPIC, context=self._context)
        self._path = foxglove.channels.PosesInFrameChannel(PATH_TOPIC, context=self._context)
        self._markers = foxglove.channels.SceneUpdateChannel(MARKERS_TOPIC, context=self._context)

    def _timestamp(self, stamp_ns: int):
        return self._messages.Timestamp(stamp_ns // 1_000_000_000, stamp_ns % 1_000_000_000)

    def publish(self, stamp_ns: int, image_rgb: np.ndarray, trajectory: Trajectory, label: str) -> None:
        """One planning cycle: the frame, the path and its label, all with the camera stamp."""
        m = self._messages
        stamp = self._timestamp(stamp_ns)
        image = np.ascontiguousarray(image_rgb, dtype=np.uint8)
        if image.ndim == 2:  # mono cameras: the Image panel wants one encoding per channel count
            image = np.repeat(image[:, :, None], 3, axis=2)
        height, width = image.shape[:2]
        self._camera.log(
            m.RawImage(
                timestamp=stamp,
                frame_id="camera",
                width=width,
                height=height,
                encoding="rgb8",
                step=3 * width,
                data=image.tobytes(),
            ),
            log_time=stamp_ns,
        )
        poses = [
            m.Pose(
                position=m.Vector3(x=float(x), y=float(y), z=0.0),
                orientation=m.Quaternion(x=0.0, y=0.0, z=math.sin(yaw / 2.0), w=math.cos(yaw / 2.0)),
            )
            for x, y, yaw in trajectory.poses_ego_frame
        ]
        self._path.log(m.PosesInFrame(timestamp=stamp, frame_id=self.frame_id, poses=poses), log_time=stamp_ns)
        xy = np.vstack([np.zeros((1, 2)), trajectory.poses_ego_frame[:, :2]])  # from the ego origin
        points = [m.Point3(x=float(x), y=float(y), z=0.0) for x, y in xy]
        green = m.Color(r=0.1, g=0.8, b=0.2, a=1.0)
        entity = m.SceneEntity(
            timestamp=stamp,
            frame_id=self.frame_id,
            id="latentvla_plan",
            lines=[m.LinePrimitive(type=m.LinePrimitiveLineType.LineStrip, thickness=0.2, points=points, color=green)],
            texts=[
                m.TextPrimitive(
                    pose=m.Pose(
                        position=m.Vector3(x=float(xy[-1, 0]), y=float(xy[-1, 1]), z=1.5),
                        orientation=m.Quaternion(w=1.0),
                    ),
                    billboard=True,
                    font_size=14.0,
                    scale_invariant=True,
                    color=green,
                    text=label,
                )
            ],
        )
        self._markers.log(m.SceneUpdate(entities=[entity]), log_time=stamp_ns)

    def close(self) -> None:
        self._server.stop()
