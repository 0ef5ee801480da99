"""Test-wide set-up: an isolated ROS 2 domain on loopback for every test run."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

# Set before anything initializes rclpy; subprocesses inherit them. A domain id
# per test run keeps parallel runs (and other machines) from seeing each other.
os.environ["ROS_DOMAIN_ID"] = str(1 + os.getpid() % 100)
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
# Pip path: the venv is the ROS prefix (a sourced ROS workspace sets this itself).
os.environ.setdefault("AMENT_PREFIX_PATH", sys.prefix)


@pytest.fixture
def rclpy_context():
    """A fresh rclpy context, shut down after the test."""
    import rclpy

    context = rclpy.context.Context()
    rclpy.init(context=context)
    yield context
    rclpy.shutdown(context=context)
