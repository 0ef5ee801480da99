"""Process set-up shared by the command line and the nodes."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def ensure_ament_prefix() -> None:
    """Pip path: the venv is the ROS prefix. Tell ament so (a sourced ROS workspace already has)."""
    if not os.environ.get("AMENT_PREFIX_PATH") and (Path(sys.prefix) / "share" / "ament_index").is_dir():
        os.environ["AMENT_PREFIX_PATH"] = sys.prefix
