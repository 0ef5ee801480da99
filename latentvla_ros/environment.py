"""Process set-up shared by the command line and the nodes: the ament prefix, and where
the shipped models are."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def ensure_ament_prefix() -> None:
    """Pip path: the venv is the ROS prefix. Tell ament so (a sourced ROS workspace already has)."""
    if not os.environ.get("AMENT_PREFIX_PATH") and (Path(sys.prefix) / "share" / "ament_index").is_dir():
        os.environ["AMENT_PREFIX_PATH"] = sys.prefix


# The shipped models (files in models/, installed to share/latentvla_ros/models).
SHIPPED_LAM = "lam_v2.0"
SHIPPED_TEACHER = "teacher_v1.0"
SHIPPED_STUDENT = "student_v1.0"
SHIPPED_PLANNER = "planner_v1.0"
SHIPPED_NO_FUSION_PLANNER = "planner_nofusion_v1.0"


def package_file(relative: str) -> Path:
    """A file this package installs (models/, config/, launch/, rviz/): installed
    share/latentvla_ros, else the source tree."""
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory("latentvla_ros")) / relative
    except (ImportError, LookupError, ValueError, OSError):
        return Path(__file__).resolve().parents[1] / relative


def shipped_model(name: str) -> Path:
    """A shipped model (file stem or directory) in the package's models/."""
    return package_file(f"models/{name}")
