"""The one place where ROS messages and the ROS-free core types meet.

Every function validates what it reads and raises
:class:`~latentvla_ros.core.validation.InputError` naming the message field
and the expected value, so a node logs one line and keeps serving.
Quaternions go through transforms3d (w, x, y, z order).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import transforms3d
from builtin_interfaces.msg import Duration, Time
from geometry_msgs.msg import Point, Pose, PoseStamped, Quaternion, TransformStamped
from nav_msgs.msg import Odometry, Path
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from latentvla_ros.core.driving_command import DrivingCommand
from latentvla_ros.core.ego_state import EGO_FRAME_ID, MAP_FRAME_ID, EgoState
from latentvla_ros.core.latent_actions import LatentActions, LatentSource
from latentvla_ros.core.trajectory import Trajectory
from latentvla_ros.core.validation import InputError, require_finite, require_frame_id
from latentvla_ros.msg import DrivingCommand as DrivingCommandMsg
from latentvla_ros.msg import GroundTruthAgent, GroundTruthAgents, PlannedTrajectory, PlannedTrajectoryPoint
from latentvla_ros.msg import LatentActions as LatentActionsMsg
from latentvla_ros.msg import Perturbation as PerturbationMsg
from latentvla_ros.simulation.agents import AgentState
from latentvla_ros.simulation.perturbation import Perturbation, PerturbationKind

try:  # ROS 2's cv_bridge where installed; the small stand-in below where not (pip path)
    from cv_bridge import CvBridge as _CvBridge
except ImportError:
    _CvBridge = None

QUATERNION_MIN_NORM = 1e-6
# time_from_start of consecutive points may deviate this much from a uniform grid.
TIME_GRID_TOLERANCE_S = 1e-3
NANOSECONDS_PER_SECOND = 1_000_000_000


# --- time -------------------------------------------------------------------


def time_to_ns(stamp: Time) -> int:
    return int(stamp.sec) * NANOSECONDS_PER_SECOND + int(stamp.nanosec)


def ns_to_time(stamp_ns: int) -> Time:
    if stamp_ns < 0:
        raise InputError("stamp", "a non-negative time in nanoseconds", stamp_ns)
    seconds, nanoseconds = divmod(int(stamp_ns), NANOSECONDS_PER_SECOND)
    return Time(sec=seconds, nanosec=nanoseconds)


def seconds_to_duration(duration_s: float) -> Duration:
    total_ns = round(duration_s * NANOSECONDS_PER_SECOND)
    seconds, nanoseconds = divmod(total_ns, NANOSECONDS_PER_SECOND)
    return Duration(sec=seconds, nanosec=nanoseconds)


def duration_to_seconds(duration: Duration) -> float:
    return duration.sec + duration.nanosec * 1e-9


def make_header(stamp_ns: int, frame_id: str) -> Header:
    return Header(stamp=ns_to_time(stamp_ns), frame_id=frame_id)


# --- orientation --------------------------------------------------------------


def yaw_from_quaternion(quaternion: Quaternion, field: str) -> float:
    """Heading (rad) of a quaternion message; raise on NaN/inf or (near) zero norm."""
    wxyz = require_finite(field, [quaternion.w, quaternion.x, quaternion.y, quaternion.z])
    norm = float(np.linalg.norm(wxyz))
    if norm < QUATERNION_MIN_NORM:
        raise InputError(field, "a unit quaternion (non-zero norm)", wxyz.tolist())
    _roll, _pitch, yaw = transforms3d.euler.quat2euler(wxyz / norm, axes="sxyz")
    return float(yaw)


def quaternion_from_yaw(yaw_rad: float) -> Quaternion:
    w, x, y, z = transforms3d.euler.euler2quat(0.0, 0.0, float(yaw_rad), axes="sxyz")
    return Quaternion(w=float(w), x=float(x), y=float(y), z=float(z))


def pose_from_xy_yaw(x_m: float, y_m: float, yaw_rad: float) -> Pose:
    return Pose(position=Point(x=float(x_m), y=float(y_m), z=0.0), orientation=quaternion_from_yaw(yaw_rad))


# --- odometry <-> ego state ---------------------------------------------------


def odometry_to_ego_state(
    odometry: Odometry,
    expected_frame_id: str = MAP_FRAME_ID,
    expected_child_frame_id: str = EGO_FRAME_ID,
) -> EgoState:
    """Odometry (pose in ``frame_id``, twist in ``child_frame_id``) to an EgoState.

    Acceleration is left at zero: odometry does not carry it (see
    :meth:`EgoState.with_acceleration_from`).
    """
    require_frame_id("Odometry.header.frame_id", odometry.header.frame_id, expected_frame_id)
    require_frame_id("Odometry.child_frame_id", odometry.child_frame_id, expected_child_frame_id)
    position = odometry.pose.pose.position
    x_m, y_m = require_finite("Odometry.pose.pose.position", [position.x, position.y, position.z])[:2]
    yaw_rad = yaw_from_quaternion(odometry.pose.pose.orientation, "Odometry.pose.pose.orientation")
    linear, angular = odometry.twist.twist.linear, odometry.twist.twist.angular
    velocity_x, velocity_y = require_finite("Odometry.twist.twist.linear", [linear.x, linear.y, linear.z])[:2]
    yaw_rate = require_finite("Odometry.twist.twist.angular", [angular.x, angular.y, angular.z])[2]
    return EgoState(
        stamp_ns=time_to_ns(odometry.header.stamp),
        x_m=float(x_m),
        y_m=float(y_m),
        yaw_rad=yaw_rad,
        velocity_x_mps=float(velocity_x),
        velocity_y_mps=float(velocity_y),
        yaw_rate_rps=float(yaw_rate),
        frame_id=odometry.header.frame_id,
        child_frame_id=odometry.child_frame_id,
    )


def ego_state_to_odometry(ego_state: EgoState) -> Odometry:
    odometry = Odometry()
    odometry.header = make_header(ego_state.stamp_ns, ego_state.frame_id)
    odometry.child_frame_id = ego_state.child_frame_id
    odometry.pose.pose = pose_from_xy_yaw(ego_state.x_m, ego_state.y_m, ego_state.yaw_rad)
    odometry.twist.twist.linear.x = ego_state.velocity_x_mps
    odometry.twist.twist.linear.y = ego_state.velocity_y_mps
    odometry.twist.twist.angular.z = ego_state.yaw_rate_rps
    return odometry


# --- trajectory ---------------------------------------------------------------


# PlannedTrajectory.mode in words, for reports.
PLAN_MODE_NAMES = {
    PlannedTrajectory.MODE_DISTILLED: "distilled",
    PlannedTrajectory.MODE_UNDISTILLED: "undistilled",
    PlannedTrajectory.MODE_SAFE_STOP: "safe_stop",
    PlannedTrajectory.MODE_EXPERT: "expert",
    PlannedTrajectory.MODE_BASELINE: "baseline",
}


def trajectory_to_msg(
    trajectory: Trajectory,
    stamp_ns: int,
    mode: int,
    latent_tokens: Sequence[int] = (),
    model_version: str = "",
    frame_id: str = EGO_FRAME_ID,
    initial_speed_mps: float | None = None,
) -> PlannedTrajectory:
    """A PlannedTrajectory in ``frame_id`` (the ego frame at ``stamp_ns``)."""
    if mode not in (
        PlannedTrajectory.MODE_DISTILLED,
        PlannedTrajectory.MODE_UNDISTILLED,
        PlannedTrajectory.MODE_SAFE_STOP,
        PlannedTrajectory.MODE_EXPERT,
        PlannedTrajectory.MODE_BASELINE,
    ):
        raise InputError("PlannedTrajectory.mode", "one of PlannedTrajectory.MODE_*", mode)
    kinematics = trajectory.kinematics(initial_speed_mps)
    message = PlannedTrajectory(header=make_header(stamp_ns, frame_id), mode=mode, model_version=model_version)
    message.latent_tokens = [int(token) for token in latent_tokens]
    for index, ((x_m, y_m, yaw_rad), time_s) in enumerate(
        zip(trajectory.poses_ego_frame, trajectory.times_s, strict=True)
    ):
        message.points.append(
            PlannedTrajectoryPoint(
                time_from_start=seconds_to_duration(time_s),
                pose=pose_from_xy_yaw(x_m, y_m, yaw_rad),
                longitudinal_velocity_mps=float(kinematics.longitudinal_velocity_mps[index]),
                lateral_velocity_mps=float(kinematics.lateral_velocity_mps[index]),
                acceleration_mps2=float(kinematics.acceleration_mps2[index]),
                heading_rate_rps=float(kinematics.heading_rate_rps[index]),
            )
        )
    return message


def trajectory_from_msg(message: PlannedTrajectory, expected_frame_id: str = EGO_FRAME_ID) -> Trajectory:
    """The poses of a PlannedTrajectory, which must lie on a uniform time grid."""
    require_frame_id("PlannedTrajectory.header.frame_id", message.header.frame_id, expected_frame_id)
    if len(message.points) == 0:
        raise InputError("PlannedTrajectory.points", "at least one point", 0)
    times_s = np.array([duration_to_seconds(point.time_from_start) for point in message.points])
    interval_s = float(times_s[0])
    expected_times_s = interval_s * np.arange(1, len(times_s) + 1)
    if interval_s <= 0.0 or np.max(np.abs(times_s - expected_times_s)) > TIME_GRID_TOLERANCE_S:
        raise InputError(
            "PlannedTrajectory.points[].time_from_start",
            "a uniform grid k * dt, k = 1..N, dt > 0",
            times_s.round(3).tolist(),
        )
    poses = []
    for index, point in enumerate(message.points):
        field = f"PlannedTrajectory.points[{index}].pose"
        position = require_finite(f"{field}.position", [point.pose.position.x, point.pose.position.y])
        yaw = yaw_from_quaternion(point.pose.orientation, f"{field}.orientation")
        poses.append([position[0], position[1], yaw])
    return Trajectory(np.array(poses), interval_s)


def trajectory_to_path(trajectory: Trajectory, stamp_ns: int, frame_id: str = EGO_FRAME_ID) -> Path:
    """nav_msgs/Path for RViz, starting at the current pose (the frame's origin)."""
    header = make_header(stamp_ns, frame_id)
    path = Path(header=header)
    for x_m, y_m, yaw_rad in np.vstack([np.zeros((1, 3)), trajectory.poses_ego_frame]):
        path.poses.append(PoseStamped(header=header, pose=pose_from_xy_yaw(x_m, y_m, yaw_rad)))
    return path


def trajectory_to_markers(
    trajectory: Trajectory,
    stamp_ns: int,
    frame_id: str = EGO_FRAME_ID,
    namespace: str = "trajectory",
    rgba: tuple[float, float, float, float] = (0.1, 0.8, 0.2, 1.0),
    label: str = "",
) -> MarkerArray:
    """MarkerArray for RViz: DELETEALL first (no stale markers), then a line
    through the poses, a sphere per pose and, if given, a text label."""
    header = make_header(stamp_ns, frame_id)
    color = ColorRGBA(r=rgba[0], g=rgba[1], b=rgba[2], a=rgba[3])
    points = [
        Point(x=float(x), y=float(y), z=0.0) for x, y, _ in np.vstack([np.zeros((1, 3)), trajectory.poses_ego_frame])
    ]
    delete_all = Marker(header=header, ns=namespace, action=Marker.DELETEALL)
    line = Marker(
        header=header, ns=namespace, id=0, type=Marker.LINE_STRIP, action=Marker.ADD, points=points, color=color
    )
    line.scale.x = 0.2
    line.pose.orientation.w = 1.0
    spheres = Marker(
        header=header, ns=namespace, id=1, type=Marker.SPHERE_LIST, action=Marker.ADD, points=points[1:], color=color
    )
    spheres.scale.x = spheres.scale.y = spheres.scale.z = 0.4
    spheres.pose.orientation.w = 1.0
    markers = [delete_all, line, spheres]
    if label:
        text = Marker(
            header=header, ns=namespace, id=2, type=Marker.TEXT_VIEW_FACING, action=Marker.ADD, text=label, color=color
        )
        text.pose.position = Point(x=float(points[-1].x), y=float(points[-1].y), z=1.5)
        text.pose.orientation.w = 1.0
        text.scale.z = 0.8
        markers.append(text)
    return MarkerArray(markers=markers)


# --- latent actions -------------------------------------------------------------


def latent_actions_to_msg(latent_actions: LatentActions) -> LatentActionsMsg:
    message = LatentActionsMsg(
        header=make_header(latent_actions.stamp_ns, latent_actions.frame_id),
        source=int(latent_actions.source),
        codebook_size=latent_actions.codebook_size,
        step_period_s=float(latent_actions.step_period_s),
        model_version=latent_actions.model_version,
    )
    message.tokens = latent_actions.tokens.astype(np.uint8).tolist()
    message.probabilities = latent_actions.probabilities.reshape(-1).tolist()
    if latent_actions.embedding is not None:
        message.embedding_dim = int(latent_actions.embedding.shape[1])
        message.embedding = latent_actions.embedding.reshape(-1).tolist()
    if latent_actions.visual_embedding is not None:
        message.visual_embedding = latent_actions.visual_embedding.tolist()
    return message


def latent_actions_from_msg(message: LatentActionsMsg) -> LatentActions:
    horizon, codebook_size = len(message.tokens), int(message.codebook_size)
    if codebook_size == 0:
        raise InputError("LatentActions.codebook_size", "a positive number of codes", codebook_size)
    probabilities = np.asarray(message.probabilities, dtype=np.float32)
    if probabilities.size != horizon * codebook_size:
        raise InputError(
            "LatentActions.probabilities",
            f"len(tokens) * codebook_size = {horizon} * {codebook_size} = {horizon * codebook_size} values",
            probabilities.size,
        )
    if message.source not in (LatentSource.STUDENT, LatentSource.TEACHER):
        raise InputError("LatentActions.source", "SOURCE_STUDENT (0) or SOURCE_TEACHER (1)", message.source)
    embedding = None
    if len(message.embedding) > 0:
        embedding_dim = int(message.embedding_dim)
        if embedding_dim == 0 or len(message.embedding) != horizon * embedding_dim:
            raise InputError(
                "LatentActions.embedding",
                f"len(tokens) * embedding_dim = {horizon} * {embedding_dim} values",
                len(message.embedding),
            )
        embedding = np.asarray(message.embedding, dtype=np.float32).reshape(horizon, embedding_dim)
    visual = None
    if len(message.visual_embedding) > 0:
        if embedding is None or len(message.visual_embedding) != embedding.shape[1]:
            raise InputError(
                "LatentActions.visual_embedding", "embedding_dim values beside the per-step embedding",
                len(message.visual_embedding),
            )  # fmt: skip
        visual = np.asarray(message.visual_embedding, dtype=np.float32)
    return LatentActions(
        stamp_ns=time_to_ns(message.header.stamp),
        source=LatentSource(message.source),
        tokens=np.asarray(message.tokens, dtype=np.int64),
        probabilities=probabilities.reshape(horizon, codebook_size),
        step_period_s=float(message.step_period_s),
        model_version=message.model_version,
        embedding=embedding,
        frame_id=message.header.frame_id,
        visual_embedding=visual,
    )


# --- images (cv_bridge-compatible) ---------------------------------------------------

# Channels and the cv2 conversion to RGB for each supported sensor_msgs/Image encoding.
IMAGE_ENCODINGS = {
    "rgb8": (3, None),
    "bgr8": (3, cv2.COLOR_BGR2RGB),
    "rgba8": (4, cv2.COLOR_RGBA2RGB),
    "bgra8": (4, cv2.COLOR_BGRA2RGB),
    "mono8": (1, cv2.COLOR_GRAY2RGB),
    # 4:2:2 YUV, 2 bytes a pixel: ROS's "yuv422" is UYVY byte order, "yuv422_yuy2" YUYV
    # (sensor_msgs/image_encodings.hpp); Jazzy also names them "uyvy" and "yuyv".
    "yuv422": (2, cv2.COLOR_YUV2RGB_UYVY),
    "uyvy": (2, cv2.COLOR_YUV2RGB_UYVY),
    "yuv422_yuy2": (2, cv2.COLOR_YUV2RGB_YUYV),
    "yuyv": (2, cv2.COLOR_YUV2RGB_YUYV),
}


def image_to_msg(rgb: np.ndarray, stamp_ns: int, frame_id: str) -> Image:
    """(H, W, 3) uint8 RGB -> sensor_msgs/Image rgb8, as ``cv_bridge.cv2_to_imgmsg(rgb, "rgb8")``."""
    rgb = np.ascontiguousarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise InputError("image", "an (H, W, 3) uint8 RGB array", f"{rgb.dtype} {rgb.shape}")
    if _CvBridge is not None:
        message = _CvBridge().cv2_to_imgmsg(rgb, encoding="rgb8")
        message.header = make_header(stamp_ns, frame_id)
        return message
    height, width, _ = rgb.shape
    return Image(
        header=make_header(stamp_ns, frame_id),
        height=height,
        width=width,
        encoding="rgb8",
        is_bigendian=0,
        step=width * 3,
        data=rgb.tobytes(),
    )


def image_from_msg(message: Image) -> np.ndarray:
    """sensor_msgs/Image (rgb8, bgr8, rgba8, bgra8, mono8, yuv422/uyvy, yuv422_yuy2/yuyv) -> (H, W, 3) uint8 RGB.

    Validates encoding and buffer size (row padding in ``step`` is allowed),
    as ``cv_bridge.imgmsg_to_cv2(message, "rgb8")`` does.
    """
    if message.encoding not in IMAGE_ENCODINGS:
        raise InputError("Image.encoding", f"one of {', '.join(IMAGE_ENCODINGS)}", message.encoding)
    channels, to_rgb = IMAGE_ENCODINGS[message.encoding]
    height, width, step = int(message.height), int(message.width), int(message.step)
    if height == 0 or width == 0:
        raise InputError("Image.height/width", "a non-empty image", f"{height}x{width}")
    if step < width * channels:
        raise InputError("Image.step", f">= width * {channels} = {width * channels} bytes", step)
    data = (
        np.frombuffer(bytes(message.data), dtype=np.uint8) if not isinstance(message.data, np.ndarray) else message.data
    )
    if data.size != step * height:
        raise InputError("Image.data", f"step * height = {step * height} bytes", data.size)
    if _CvBridge is not None:
        return np.ascontiguousarray(_CvBridge().imgmsg_to_cv2(message, desired_encoding="rgb8"))
    rows = data.reshape(height, step)[:, : width * channels].reshape(height, width, channels)
    if to_rgb is None:
        return rows.copy()
    return cv2.cvtColor(rows if channels > 1 else rows[..., 0], to_rgb)


def compressed_image_to_msg(rgb: np.ndarray, stamp_ns: int, frame_id: str, jpeg_quality: int = 90) -> CompressedImage:
    """(H, W, 3) uint8 RGB -> sensor_msgs/CompressedImage (jpeg), as image_transport's compressed plugin."""
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
    if not ok:
        raise InputError("image", "an image OpenCV can encode as JPEG", rgb.shape)
    return CompressedImage(
        header=make_header(stamp_ns, frame_id), format="rgb8; jpeg compressed bgr8", data=encoded.tobytes()
    )


def compressed_image_from_msg(message: CompressedImage) -> np.ndarray:
    """sensor_msgs/CompressedImage (jpeg or png) -> (H, W, 3) uint8 RGB."""
    buffer = np.frombuffer(bytes(message.data), dtype=np.uint8)
    decoded = cv2.imdecode(buffer, cv2.IMREAD_COLOR) if buffer.size else None
    if decoded is None:
        raise InputError("CompressedImage.data", "a JPEG or PNG image", f"{buffer.size} undecodable bytes")
    return cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)


def camera_info_msg(intrinsics: np.ndarray, width_px: int, height_px: int, stamp_ns: int, frame_id: str) -> CameraInfo:
    """CameraInfo of an undistorted pinhole camera with (3, 3) ``intrinsics``."""
    projection = np.zeros((3, 4))
    projection[:, :3] = intrinsics
    return CameraInfo(
        header=make_header(stamp_ns, frame_id),
        height=height_px,
        width=width_px,
        distortion_model="plumb_bob",
        d=[0.0] * 5,
        k=intrinsics.reshape(-1).tolist(),
        r=np.eye(3).reshape(-1).tolist(),
        p=projection.reshape(-1).tolist(),
    )


def intrinsics_from_camera_info(message: CameraInfo) -> np.ndarray:
    intrinsics = require_finite("CameraInfo.k", list(message.k)).reshape(3, 3)
    if intrinsics[0, 0] <= 0.0 or intrinsics[1, 1] <= 0.0:
        raise InputError("CameraInfo.k", "positive focal lengths fx, fy", intrinsics[[0, 1], [0, 1]].tolist())
    return intrinsics


# --- transforms -------------------------------------------------------------------------


def transform_msg(
    parent_frame: str, child_frame: str, stamp_ns: int, translation: np.ndarray, rotation_matrix: np.ndarray
) -> TransformStamped:
    """TransformStamped placing ``child_frame`` in ``parent_frame``."""
    transform = TransformStamped(header=make_header(stamp_ns, parent_frame), child_frame_id=child_frame)
    transform.transform.translation.x, transform.transform.translation.y, transform.transform.translation.z = (
        float(v) for v in translation
    )
    w, x, y, z = transforms3d.quaternions.mat2quat(np.asarray(rotation_matrix, dtype=np.float64))
    transform.transform.rotation = Quaternion(w=float(w), x=float(x), y=float(y), z=float(z))
    return transform


def ego_transform_msg(ego_state: EgoState) -> TransformStamped:
    """map -> base_link for the ego's pose."""
    rotation = transforms3d.euler.euler2mat(0.0, 0.0, ego_state.yaw_rad, axes="sxyz")
    return transform_msg(
        ego_state.frame_id, ego_state.child_frame_id, ego_state.stamp_ns, [ego_state.x_m, ego_state.y_m, 0.0], rotation
    )


def transform_to_matrix(transform: TransformStamped) -> np.ndarray:
    """(4, 4) homogeneous matrix of a transform (child frame -> parent frame)."""
    rotation = transform.transform.rotation
    wxyz = require_finite("TransformStamped.transform.rotation", [rotation.w, rotation.x, rotation.y, rotation.z])
    if np.linalg.norm(wxyz) < QUATERNION_MIN_NORM:
        raise InputError("TransformStamped.transform.rotation", "a unit quaternion (non-zero norm)", wxyz.tolist())
    translation = transform.transform.translation
    matrix = np.eye(4)
    matrix[:3, :3] = transforms3d.quaternions.quat2mat(wxyz / np.linalg.norm(wxyz))
    matrix[:3, 3] = require_finite(
        "TransformStamped.transform.translation", [translation.x, translation.y, translation.z]
    )
    return matrix


# --- ground truth and commands -----------------------------------------------------------


def agents_to_msg(agents: Sequence[AgentState], stamp_ns: int, frame_id: str = MAP_FRAME_ID) -> GroundTruthAgents:
    message = GroundTruthAgents(header=make_header(stamp_ns, frame_id))
    message.agents = [
        GroundTruthAgent(
            id=agent.agent_id,
            pose=pose_from_xy_yaw(agent.x_m, agent.y_m, agent.yaw_rad),
            speed_mps=agent.speed_mps,
            yaw_rate_rps=agent.yaw_rate_rps,
            length_m=agent.length_m,
            width_m=agent.width_m,
        )
        for agent in agents
    ]
    return message


def agents_from_msg(message: GroundTruthAgents, expected_frame_id: str = MAP_FRAME_ID) -> list[AgentState]:
    require_frame_id("GroundTruthAgents.header.frame_id", message.header.frame_id, expected_frame_id)
    agents = []
    for index, agent in enumerate(message.agents):
        field = f"GroundTruthAgents.agents[{index}]"
        position = require_finite(f"{field}.pose.position", [agent.pose.position.x, agent.pose.position.y])
        motion = require_finite(
            f"{field}.speed/yaw_rate/size", [agent.speed_mps, agent.yaw_rate_rps, agent.length_m, agent.width_m]
        )
        agents.append(
            AgentState(
                agent_id=int(agent.id),
                x_m=float(position[0]),
                y_m=float(position[1]),
                yaw_rad=yaw_from_quaternion(agent.pose.orientation, f"{field}.pose.orientation"),
                speed_mps=float(motion[0]),
                yaw_rate_rps=float(motion[1]),
                length_m=float(motion[2]),
                width_m=float(motion[3]),
            )
        )
    return agents


def driving_command_to_msg(command: DrivingCommand, stamp_ns: int) -> DrivingCommandMsg:
    return DrivingCommandMsg(header=make_header(stamp_ns, ""), command=int(command))


def driving_command_from_msg(message: DrivingCommandMsg) -> DrivingCommand:
    if message.command not in tuple(DrivingCommand):
        raise InputError("DrivingCommand.command", "LEFT (0), STRAIGHT (1), RIGHT (2) or UNKNOWN (3)", message.command)
    return DrivingCommand(message.command)


def perturbation_to_msg(perturbation: Perturbation) -> PerturbationMsg:
    return PerturbationMsg(
        header=make_header(perturbation.start_ns, EGO_FRAME_ID),
        kind=int(perturbation.kind),
        start=ns_to_time(perturbation.start_ns),
        end=ns_to_time(perturbation.end_ns),
        magnitude=float(perturbation.magnitude),
    )


def perturbation_from_msg(message: PerturbationMsg) -> Perturbation:
    if message.kind not in tuple(PerturbationKind):
        raise InputError(
            "Perturbation.kind", "LATERAL_OFFSET (0), HEADING (1), SPEED_UP (2) or SLOW_DOWN (3)", message.kind
        )
    start_ns, end_ns = time_to_ns(message.start), time_to_ns(message.end)
    if end_ns < start_ns:
        raise InputError("Perturbation.end", f"not before start ({start_ns} ns)", end_ns)
    magnitude = float(require_finite("Perturbation.magnitude", [message.magnitude])[0])
    return Perturbation(PerturbationKind(message.kind), start_ns, end_ns, magnitude)
