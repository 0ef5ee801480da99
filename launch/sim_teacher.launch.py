"""`ros2 launch latentvla_ros sim_teacher.launch.py`: the graph of demo.launch.yaml, included, so the
Python and YAML forms (and `latentvla launch sim_teacher.launch.yaml` without ROS) are one
description. Launch arguments (name:=value) pass through to it; the YAML file lists them."""

from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import AnyLaunchDescriptionSource
from launch.substitutions import PathJoinSubstitution
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription


def generate_launch_description() -> LaunchDescription:
    description = PathJoinSubstitution([FindPackageShare("latentvla_ros"), "launch", "sim_teacher.launch.yaml"])
    return LaunchDescription([IncludeLaunchDescription(AnyLaunchDescriptionSource(description))])
