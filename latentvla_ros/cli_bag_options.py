"""The topic and frame options every bag command takes (``dataset``, ``preview``, ``eval``,
``replay``): the same names and defaults everywhere, so a team's own bag (other topics,
``odom`` -> ``base_footprint``) works with each command the same way."""

from __future__ import annotations

import argparse

from latentvla_ros import topics


def add_bag_topic_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("bag topics and frames (when the data is a bag)")
    group.add_argument(
        "--camera-topic",
        default=topics.CAMERA_IMAGE_COMPRESSED,
        help="Image or CompressedImage (raw: the default's parent)",
    )
    group.add_argument("--odometry-topic", default=topics.ODOMETRY, help="nav_msgs/Odometry")
    group.add_argument(
        "--command-topic", default=topics.DRIVING_COMMAND, help="optional; derived from odometry if absent"
    )
    group.add_argument("--odometry-frame", default="map", help="expected Odometry.header.frame_id (often odom)")
    group.add_argument("--base-frame", default="base_link", help="expected Odometry.child_frame_id")


def dataset_config(args: argparse.Namespace):
    """The dataset builder's topics and frames from :func:`add_bag_topic_options`."""
    from latentvla_ros.data.dataset_builder import DatasetConfig

    return DatasetConfig(
        camera_topic=args.camera_topic,
        odometry_topic=args.odometry_topic,
        command_topic=args.command_topic,
        odometry_frame_id=args.odometry_frame,
        odometry_child_frame_id=args.base_frame,
    )
