"""The privileged expert as a planner node: the same slot the LatentVLA planner takes.

Synchronizes odometry and ground-truth agents by stamp, plans with the
expert and publishes the PlannedTrajectory (mode EXPERT) for the simulator's
controller, plus nav_msgs/Path and a MarkerArray for RViz. The road and
route come from the simulator's latched episode description.
"""

from __future__ import annotations

import json
import sys

from nav_msgs.msg import Odometry, Path
from rclpy.node import Node
from std_msgs.msg import String
from visualization_msgs.msg import MarkerArray

from latentvla_ros.core.validation import InputError
from latentvla_ros.msg import GroundTruthAgents, PlannedTrajectory
from latentvla_ros.planning.interface import PlannerInput, PrivilegedView
from latentvla_ros.ros import conversions
from latentvla_ros.ros.message_sync import ApproximateTimeSynchronizer, Subscriber
from latentvla_ros.ros.node_support import ProcessingTimePublisher, declare_defaults, require, run_node
from latentvla_ros.ros.qos import LATCHED, STATE
from latentvla_ros.simulation.expert import ExpertPlanner
from latentvla_ros.simulation.scenarios import build_road_network


class ExpertPlannerNode(Node):
    def __init__(self) -> None:
        super().__init__("expert_planner")
        declare_defaults(self, "expert_planner.param.yaml")
        slop = self.get_parameter("sync_slop_s").value
        queue_size = self.get_parameter("sync_queue_size").value
        require(slop >= 0.0, f"sync_slop_s must be >= 0, got {slop}")
        require(queue_size >= 1, f"sync_queue_size must be >= 1, got {queue_size}")

        self.planner: ExpertPlanner | None = None
        self.episode: dict | None = None
        self.create_subscription(String, "~/input/episode", self._on_episode, LATCHED)
        odometry = Subscriber(self, Odometry, "~/input/odometry", qos_profile=STATE)
        agents = Subscriber(self, GroundTruthAgents, "~/input/agents", qos_profile=STATE)
        self._sync = ApproximateTimeSynchronizer([odometry, agents], queue_size, slop)
        self._sync.registerCallback(self._on_inputs)
        self.trajectory_publisher = self.create_publisher(PlannedTrajectory, "~/output/trajectory", STATE)
        self.path_publisher = self.create_publisher(Path, "~/output/path", STATE)
        self.marker_publisher = self.create_publisher(MarkerArray, "~/output/markers", STATE)
        self.processing_time = ProcessingTimePublisher(self)

    def _on_episode(self, message: String) -> None:
        try:
            episode = json.loads(message.data)
            scenario = episode["scenario"]["name"]
            route = [tuple(lane) for lane in episode["route"]]
        except (ValueError, KeyError, TypeError) as error:
            self.get_logger().error(f"ignoring episode description: {type(error).__name__}: {error}")
            return
        if self.planner is None or self.episode is None or self.episode["scenario"]["name"] != scenario:
            self.planner = ExpertPlanner(build_road_network(scenario))
        self.planner.reset(route, float(episode["cruise_speed_mps"]))
        self.episode = episode
        self.get_logger().info(f"episode {episode['episode']} of {scenario}: route of {len(route)} lanes")

    def _on_inputs(self, odometry: Odometry, agents_message: GroundTruthAgents) -> None:
        if self.planner is None:
            self.get_logger().warn("no episode description yet: not planning", throttle_duration_sec=5.0)
            return
        self.processing_time.start()
        try:
            ego = conversions.odometry_to_ego_state(odometry)
            agents = conversions.agents_from_msg(agents_message)
        except InputError as error:
            self.get_logger().error(f"skipping inputs: {error}", throttle_duration_sec=2.0)
            return
        view = PrivilegedView(agents, list(self.planner.route), self.planner.cruise_speed_mps)
        trajectory = self.planner.compute_trajectory(PlannerInput(ego.stamp_ns, ego, privileged=view))
        message = conversions.trajectory_to_msg(
            trajectory, ego.stamp_ns, PlannedTrajectory.MODE_EXPERT, initial_speed_mps=ego.speed_mps
        )
        self.trajectory_publisher.publish(message)
        self.path_publisher.publish(conversions.trajectory_to_path(trajectory, ego.stamp_ns))
        self.marker_publisher.publish(
            conversions.trajectory_to_markers(trajectory, ego.stamp_ns, namespace="expert", label="expert")
        )
        self.processing_time.stop()


def main(argv: list[str] | None = None) -> int:
    return run_node(ExpertPlannerNode, argv)


if __name__ == "__main__":
    sys.exit(main())
