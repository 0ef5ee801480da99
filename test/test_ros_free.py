"""Training off the vehicle: the models, training, evaluation and the cache reader import and
run without rclpy or the generated messages, installed from setup.py with pip.

Each check runs in a subprocess whose ``sitecustomize`` makes every ROS import fail, as on
a GPU server with no ROS install."""

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
from helpers.lam_cache import write_cache as _write_cache

REPO_ROOT = Path(__file__).resolve().parents[1]

# What a ROS install (or the pip ROS wheels) provides: none of it may be needed.
ROS_MODULES = (
    "rclpy",
    "rosidl_runtime_py",
    "rosidl_parser",
    "rpyutils",
    "builtin_interfaces",
    "std_msgs",
    "sensor_msgs",
    "nav_msgs",
    "geometry_msgs",
    "visualization_msgs",
    "diagnostic_msgs",
    "rosgraph_msgs",
    "tf2_msgs",
    "latentvla_ros.msg",
    "ament_index_python",
    "cv_bridge",
    "message_filters",
    "launch",
    "launch_ros",
    "rosbags",
    "highway_env",
)

ROS_FREE_MODULES = (
    "latentvla_ros.cli",
    "latentvla_ros.core.latent_actions",
    "latentvla_ros.core.trajectory",
    "latentvla_ros.data.cache",
    "latentvla_ros.models.checkpoint",
    "latentvla_ros.models.latent_action",
    "latentvla_ros.models.latent_action_features",
    "latentvla_ros.models.latent_action_labelling",
    "latentvla_ros.models.latent_action_loading",
    "latentvla_ros.evaluation.latent_action_evaluation",
    "latentvla_ros.training.loop",
    "latentvla_ros.training.lam_stages",
    "latentvla_ros.simulation.perturbation",
    "latentvla_ros.core.camera_anchor",
    "latentvla_ros.models.teacher.teacher_model",
    "latentvla_ros.models.teacher.teacher_features",
    "latentvla_ros.evaluation.teacher_evaluation",
    "latentvla_ros.training.teacher_stage",
    "latentvla_ros.models.student",
    "latentvla_ros.models.planner",
    "latentvla_ros.models.planner_features",
    "latentvla_ros.training.student_stage",
    "latentvla_ros.training.planner_stage",
    "latentvla_ros.evaluation.student_evaluation",
    "latentvla_ros.evaluation.planner_evaluation",
    "latentvla_ros.evaluation.error_headroom",
)

SITECUSTOMIZE = f"""
import importlib.abc
import sys

BLOCKED = {ROS_MODULES!r}


class NoRos(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if any(name == blocked or name.startswith(blocked + ".") for blocked in BLOCKED):
            raise ModuleNotFoundError(f"No module named {{name!r}} (no ROS on this machine)")
        return None


sys.meta_path.insert(0, NoRos())
"""


@pytest.fixture
def no_ros_env(tmp_path):
    """Environment variables for a subprocess in which every ROS import fails."""
    blocker = tmp_path / "no_ros"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = dict(os.environ, PYTHONPATH=str(blocker))
    env.pop("AMENT_PREFIX_PATH", None)
    return env


def _python(code: str, env: dict, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )


def test_ros_free_modules_import_where_rclpy_cannot(no_ros_env, tmp_path):
    code = f"""
import importlib
try:
    import rclpy
except ImportError:
    pass
else:
    raise SystemExit("the blocker failed: rclpy imported")
for name in {ROS_FREE_MODULES!r}:
    importlib.import_module(name)
from latentvla_ros.cli import main
raise SystemExit(main(["train", "lam", "--help"]))
"""
    result = _python(code, no_ros_env, REPO_ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "--collapse-warmup-steps" in result.stdout
    # And the check can fail: a ROS-side module does not import there.
    failing = _python("import latentvla_ros.ros.conversions", no_ros_env, REPO_ROOT)
    assert failing.returncode != 0 and "no ROS on this machine" in failing.stderr


@pytest.mark.slow
def test_pip_installed_package_trains_under_torchrun_without_ros(no_ros_env, tmp_path):
    """setup.py installs the package; torchrun trains the LAM from that install, on a cache
    built elsewhere, with no ROS importable (two gloo processes: the GPU path's code)."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("setup.py", "package.xml", "README.md"):
        shutil.copy(REPO_ROOT / name, source / name)
    shutil.copytree(REPO_ROOT / "latentvla_ros", source / "latentvla_ros", ignore=shutil.ignore_patterns("__pycache__"))
    target = tmp_path / "site"
    installed = subprocess.run(
        [
            sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
            "--target", str(target), str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr[-3000:]
    assert (target / "latentvla_ros" / "training" / "lam_stages.py").is_file()
    env = dict(no_ros_env, PYTHONPATH=f"{no_ros_env['PYTHONPATH']}{os.pathsep}{target}")
    where = _python("import latentvla_ros.training.lam_stages as m; print(m.__file__)", env, tmp_path)
    assert where.returncode == 0 and where.stdout.strip().startswith(str(target)), where.stdout + where.stderr
    cache = _write_cache(tmp_path / "cache")
    torchrun = Path(sys.executable).parent / "torchrun"
    result = subprocess.run(
        [
            str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "latentvla_ros.cli", "train", "lam",
            "--data", str(cache), "--out", str(tmp_path / "run"), "--stage1-steps", "2", "--stage2-steps", "2",
            "--batch-size", "4",
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    description = json.loads((tmp_path / "run" / "lam_v2.0.json").read_text())
    assert description["kind"] == "latent_action_model" and len(description["sha256"]) == 64


# Python imports whose Debian/rosdep key is not python3-<import name>.
ROSDEP_NAME = {"cv2": "opencv"}


def _third_party_imports(package: Path) -> dict[str, set[str]]:
    """Top-level module -> files of ``package`` importing it (absolute imports, stdlib excluded)."""
    found: dict[str, set[str]] = {}
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top != package.name:
                    found.setdefault(top, set()).add(path.relative_to(package.parent).as_posix())
    return found


def _requirement_names(lines) -> set[str]:
    return {re.split(r"[<>=!~\[; ]", line.strip(), maxsplit=1)[0].lower().replace("_", "-") for line in lines}


def test_every_third_party_import_is_declared():
    """Each import of latentvla_ros/ is declared for both installs: the colcon path (package.xml,
    by ROS name or python3-* rosdep key, or pinned in requirements-ros.txt) and the pip path
    (setup.py, install_requires or an extra) unless it is a ROS package."""
    root = ET.parse(REPO_ROOT / "package.xml").getroot()
    package_xml = {element.text.strip() for element in root if element.tag in ("depend", "exec_depend")}
    requirements_ros = _requirement_names(
        line.split("#")[0]
        for line in (REPO_ROOT / "requirements-ros.txt").read_text().splitlines()
        if line.split("#")[0].strip()
    )
    setup_source = (REPO_ROOT / "setup.py").read_text()
    setup_py = _requirement_names(re.findall(r'"([A-Za-z0-9_.\-]+(?:\[[^\]]*\])?\s*[<>=!~][^"]*)"', setup_source))
    distributions = packages_distributions()
    missing = []
    imports = _third_party_imports(REPO_ROOT / "latentvla_ros")
    for module, files in sorted(imports.items()):
        where = f"{module} (imported by {sorted(files)[0]})"
        if module in package_xml:  # a ROS package: rosdep installs it, pip cannot
            continue
        names = {name.lower().replace("_", "-") for name in distributions.get(module, [])}
        if not names:  # an optional one not installed here: a declared name after the module's
            stem = module.lower().replace("_", "-")
            names = {name for name in requirements_ros | setup_py if name == stem or name.startswith(stem + "-")}
        if not names:
            missing.append(f"{where}: neither a ROS package in package.xml nor an installed distribution")
            continue
        if f"python3-{ROSDEP_NAME.get(module, module)}" not in package_xml and not names & requirements_ros:
            missing.append(f"{where}: not in package.xml as python3-{ROSDEP_NAME.get(module, module)}, "
                           f"nor in requirements-ros.txt as {sorted(names)}")  # fmt: skip
        if not names & setup_py:
            missing.append(f"{where}: {sorted(names)} not in setup.py")
    assert {"numpy", "torch", "rclpy"} <= imports.keys()  # the scan sees the package's imports
    assert not missing, "\n".join(missing)
