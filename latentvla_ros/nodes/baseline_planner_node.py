"""A non-learned baseline in the planner's slot: constant velocity, on odometry alone.

It plans on every odometry message (stamp = the odometry stamp), so it runs on bags
without a camera and gives replay and the closed-loop suite the reference every
learned planner has to beat. Outputs as the LatentVLA planner's: PlannedTrajectory
(mode BASELINE), nav_msgs/Path, a MarkerArray and the processing time.
"""

from __future__ import annotations

import sys

from nav_msgs.msg import Odometry, Path
from rclpy.node import Node
from visualization_msgs.msg import MarkerArray

from latentvla_ros.core.validation import InputError
from latentvla_ros.msg import PlannedTrajectory
from latentvla_ros.planning.interface import ConstantVelocityPlanner, PlannerInput
from latentvla_ros.ros import conversions
from latentvla_ros.ros.node_support import ProcessingTimePublisher, declare_defaults, require, run_node
from latentvla_ros.ros.qos import STATE

BASELINES = {ConstantVelocityPlanner.name: ConstantVelocityPlanner}


class BaselinePlannerNode(Node):
    def __init__(self) -> None:
        super().__init__("baseline_planner")
        declare_defaults(self, "baseline_planner.param.yaml")
        name = self.get_parameter("planner").value
        require(name in BASELINES, f"planner must be one of {sorted(BASELINES)}, got '{name}'")
        self.planner = BASELINES[name]()
        self.odometry_frame = self.get_parameter("odometry_frame_id").value
        self.base_frame = self.get_parameter("base_frame_id").value
        self.create_subscription(Odometry, "~/input/odometry", self._on_odometry, STATE)
        self.trajectory_publisher = self.create_publisher(PlannedTrajectory, "~/output/trajectory", STATE)
        self.path_publisher = self.create_publisher(Path, "~/output/path", STATE)
        self.marker_publisher = self.create_publisher(MarkerArray, "~/output/markers", STATE)
        self.processing_time = ProcessingTimePublisher(self)
        self.get_logger().info(f"baseline planner: {name}")

    def _on_odometry(self, message: Odometry) -> None:
        try:
            ego = conversions.odometry_to_ego_state(message, self.odometry_frame, self.base_frame)
        except InputError as error:
            self.get_logger().error(f"skipping odometry: {error}", throttle_duration_sec=2.0)
            return
        self.processing_time.start()
        trajectory = self.planner.compute_trajectory(PlannerInput(ego.stamp_ns, ego))
        self.trajectory_publisher.publish(
            conversions.trajectory_to_msg(
                trajectory,
                ego.stamp_ns,
                PlannedTrajectory.MODE_BASELINE,
                frame_id=self.base_frame,
                initial_speed_mps=ego.speed_mps,
            )
        )
        self.path_publisher.publish(conversions.trajectory_to_path(trajectory, ego.stamp_ns, self.base_frame))
        self.marker_publisher.publish(
            conversions.trajectory_to_markers(
                trajectory, ego.stamp_ns, self.base_frame, namespace="baseline", label=self.planner.name
            )
        )
        self.processing_time.stop()


def main(argv: list[str] | None = None) -> int:
    return run_node(BaselinePlannerNode, argv, executor="events")  # no guard conditions here


if __name__ == "__main__":
    sys.exit(main())
