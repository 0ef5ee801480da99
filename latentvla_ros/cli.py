"""The ``latentvla`` command line: one subcommand per job (later issues add more)."""

from __future__ import annotations

import argparse
import sys

from latentvla_ros import __version__
from latentvla_ros.environment import ensure_ament_prefix


def _cmd_info(_args: argparse.Namespace) -> int:
    """Print versions and whether the ROS 2 side (rclpy, our interfaces) imports."""
    print(f"latentvla_ros {__version__}")
    try:
        import rclpy  # noqa: F401

        from latentvla_ros.msg import LatentActions, PlannedTrajectory  # noqa: F401
    except ImportError as error:
        print(f"ROS 2 interfaces: not importable ({error})")
        return 1
    print("ROS 2 interfaces: latentvla_ros/msg/LatentActions, latentvla_ros/msg/PlannedTrajectory")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="latentvla", description=__doc__)
    parser.add_argument("--version", action="version", version=f"latentvla_ros {__version__}")
    subcommands = parser.add_subparsers(dest="command", required=True)
    info = subcommands.add_parser("info", help="versions and interface check")
    info.set_defaults(handler=_cmd_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    ensure_ament_prefix()
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
