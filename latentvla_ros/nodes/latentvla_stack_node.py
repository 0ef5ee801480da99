"""Student and planner composed in one process on one executor.

The student hands its latent actions to the planner in-process (no serialization, no
DDS hop between them) and still publishes them for RViz and recording. Lower latency
than the two-node form; the same topics and parameters (node names ``student`` and
``planner``, so one parameter file serves both forms).
"""

from __future__ import annotations

import sys

from latentvla_ros.nodes.planner_node import PlannerNode
from latentvla_ros.nodes.student_node import StudentNode
from latentvla_ros.ros.node_support import ParameterError, run_node


def make_stack() -> list:
    planner = PlannerNode("planner", subscribe_latent_actions=False)
    try:
        student = StudentNode("student", on_actions=planner.accept_latent_actions)
    except ParameterError:
        planner.destroy_node()
        raise
    return [student, planner]


def main(argv: list[str] | None = None) -> int:
    return run_node(make_stack, argv, executor="single")


if __name__ == "__main__":
    sys.exit(main())
