"""Our messages are rosidl-generated and rclpy uses their generated type support."""

import subprocess
import sys
from pathlib import Path

import pytest
from ament_index_python.packages import get_package_share_directory
from ament_index_python.resources import get_resource
from latentvla_ros.msg import LatentActions, PlannedTrajectory, PlannedTrajectoryPoint
from rclpy.type_support import check_is_valid_msg_type

REPO_ROOT = Path(__file__).resolve().parents[1]
MESSAGES = (LatentActions, PlannedTrajectory, PlannedTrajectoryPoint)


@pytest.mark.parametrize("message_type", MESSAGES)
def test_message_modules_are_generated_by_rosidl(message_type):
    module_file = Path(sys.modules[message_type.__module__].__file__).resolve()
    assert REPO_ROOT / "latentvla_ros" not in module_file.parents
    assert module_file.read_text().startswith("# generated from rosidl_generator_py")


@pytest.mark.parametrize("message_type", MESSAGES)
def test_rclpy_accepts_generated_type_support(message_type):
    check_is_valid_msg_type(message_type)  # raises if the C type support is missing
    assert message_type._TYPE_SUPPORT is not None
    assert type(message_type).__name__ == f"Metaclass_{message_type.__name__}"


def test_interfaces_are_registered_in_the_ament_index():
    content, _prefix = get_resource("rosidl_interfaces", "latentvla_ros")
    registered = set(content.split())
    assert {"msg/LatentActions.msg", "msg/PlannedTrajectory.msg", "msg/PlannedTrajectoryPoint.msg"} <= registered
    share = Path(get_package_share_directory("latentvla_ros"))
    assert (share / "package.xml").is_file()
    assert (share / "msg" / "LatentActions.msg").is_file()


def test_no_hand_written_message_classes_in_sources():
    assert not (REPO_ROOT / "latentvla_ros" / "msg").exists()
    offenders = [
        str(path.relative_to(REPO_ROOT))
        for path in (REPO_ROOT / "latentvla_ros").rglob("*.py")
        if "get_fields_and_field_types" in path.read_text() or "_TYPE_SUPPORT" in path.read_text()
    ]
    assert offenders == []


def test_constants_match_the_core_enums():
    from latentvla_ros.core.latent_actions import LatentSource

    assert LatentActions.SOURCE_STUDENT == LatentSource.STUDENT
    assert LatentActions.SOURCE_TEACHER == LatentSource.TEACHER
    assert (
        len(
            {
                PlannedTrajectory.MODE_DISTILLED,
                PlannedTrajectory.MODE_UNDISTILLED,
                PlannedTrajectory.MODE_SAFE_STOP,
                PlannedTrajectory.MODE_EXPERT,
            }
        )
        == 4
    )


def test_latentvla_command_reports_interfaces():
    latentvla = Path(sys.executable).parent / "latentvla"
    result = subprocess.run([str(latentvla), "info"], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert "latentvla_ros/msg/LatentActions" in result.stdout
