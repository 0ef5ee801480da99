"""What the simulator publishes at one step, as (topic, message) pairs.

One place for both the live simulator node and the offline recorder, so a
recorded bag holds exactly what the node would have published.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from std_msgs.msg import String
from tf2_msgs.msg import TFMessage

from latentvla_ros import topics
from latentvla_ros.core.ego_state import EGO_FRAME_ID
from latentvla_ros.ros import conversions
from latentvla_ros.simulation.camera import CameraConfig
from latentvla_ros.simulation.sensors import SensorSuite
from latentvla_ros.simulation.world import DrivingWorld


@dataclass(frozen=True)
class PublishOptions:
    raw_image: bool = True
    compressed_image: bool = False
    jpeg_quality: int = 90
    ground_truth: bool = True


def episode_description(world: DrivingWorld) -> dict:
    """What a privileged listener needs to rebuild the episode: scenario, route, command."""
    episode = world.episode
    return {
        "scenario": world.scenario.to_dict(),
        "episode": world.episode_index,
        "route": [list(lane) for lane in episode.route],
        "command": int(episode.command),
        "cruise_speed_mps": episode.cruise_speed_mps,
        "start_time_ns": world.episode_start_ns,
    }


def episode_msg(world: DrivingWorld) -> String:
    return String(data=json.dumps(episode_description(world)))


def camera_static_transform(config: CameraConfig, stamp_ns: int) -> TFMessage:
    """base_link -> the camera's optical frame (x right, y down, z forward)."""
    transform = conversions.transform_msg(
        EGO_FRAME_ID,
        config.frame_id,
        stamp_ns,
        [config.mount_x_m, 0.0, config.mount_height_m],
        config.optical_to_base(),
    )
    return TFMessage(transforms=[transform])


def step_messages(world: DrivingWorld, sensors: SensorSuite, options: PublishOptions) -> list[tuple[str, object]]:
    """Every message of the world's current state, stamped with the simulation time."""
    stamp_ns = world.time_ns
    ego = world.ego_state()
    camera = sensors.camera_config
    frame = sensors.camera_frame(world)
    messages: list[tuple[str, object]] = []
    if options.raw_image:
        messages.append((topics.CAMERA_IMAGE, conversions.image_to_msg(frame, stamp_ns, camera.frame_id)))
    if options.compressed_image:
        compressed = conversions.compressed_image_to_msg(frame, stamp_ns, camera.frame_id, options.jpeg_quality)
        messages.append((topics.CAMERA_IMAGE_COMPRESSED, compressed))
    info = conversions.camera_info_msg(
        camera.intrinsics(), camera.width_px, camera.height_px, stamp_ns, camera.frame_id
    )
    messages.append((topics.CAMERA_INFO, info))
    messages.append((topics.ODOMETRY, conversions.ego_state_to_odometry(ego)))
    messages.append((topics.TF, TFMessage(transforms=[conversions.ego_transform_msg(ego)])))
    messages.append((topics.DRIVING_COMMAND, conversions.driving_command_to_msg(world.episode.command, stamp_ns)))
    if options.ground_truth:
        messages.append((topics.GROUND_TRUTH_AGENTS, conversions.agents_to_msg(world.agents(), stamp_ns)))
    return messages
