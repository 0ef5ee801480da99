"""`colcon build` of this repository in a workspace, as a ROS 2 Jazzy user runs it.

Here it runs against the pip-installed ROS 2 in the venv (the venv is the
underlay); on a machine with ROS 2 from apt the same command runs against
/opt/ros/jazzy. The installed package is then used through colcon's own
generated local_setup.sh, not through the venv's copy.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
VENV = Path(sys.prefix)
COLCON = VENV / "bin" / "colcon"


@pytest.mark.slow
def test_colcon_build_and_use_installed_package(tmp_path):
    if shutil.which("cmake") is None:
        pytest.fail("cmake is not installed: colcon cannot build the interfaces")
    workspace = tmp_path / "ws"
    (workspace / "src").mkdir(parents=True)
    (workspace / "src" / "latentvla_ros").symlink_to(REPO_ROOT)
    env = dict(os.environ)
    env.update(
        AMENT_PREFIX_PATH=str(VENV),
        CMAKE_PREFIX_PATH=str(VENV),
        MAKEFLAGS="-j2",
        COLCON_HOME=str(tmp_path / "colcon_home"),  # no user colcon defaults
    )
    # setup.py (the pip path) sits beside package.xml: colcon must still build with CMake.
    listed = subprocess.run(
        [str(COLCON), "list"], cwd=workspace, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split() == ["latentvla_ros", "src/latentvla_ros", "(ros.ament_cmake)"], listed.stdout
    build = subprocess.run(
        [
            str(COLCON),
            "build",
            "--event-handlers",
            "console_cohesion+",
            "--cmake-args",
            f"-DPython3_EXECUTABLE={sys.executable}",
            "-DBUILD_TESTING=OFF",
            "-Wno-dev",
        ],
        cwd=workspace,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert build.returncode == 0, build.stdout[-4000:] + build.stderr[-4000:]
    assert "Summary: 1 package finished" in build.stdout

    install = workspace / "install" / "latentvla_ros"
    assert (install / "lib" / "latentvla_ros" / "latentvla").stat().st_mode & 0o111
    assert (install / "share" / "latentvla_ros" / "package.xml").is_file()
    assert (install / "share" / "ament_index" / "resource_index" / "packages" / "latentvla_ros").is_file()

    probe = (
        "import latentvla_ros.msg, latentvla_ros.core.trajectory as t;"
        "from latentvla_ros.msg import PlannedTrajectory;"
        "from rclpy.type_support import check_is_valid_msg_type;"
        "check_is_valid_msg_type(PlannedTrajectory);"
        "print(latentvla_ros.msg.__file__); print(t.__file__)"
    )
    use = subprocess.run(
        ["bash", "-c", f'. "{workspace}/install/local_setup.sh" && latentvla info && "{sys.executable}" -c "{probe}"'],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert use.returncode == 0, use.stdout + use.stderr
    assert "latentvla_ros/msg/LatentActions" in use.stdout
    imported_from = use.stdout.strip().splitlines()[-2:]
    assert all(path.startswith(str(install)) for path in imported_from), imported_from
