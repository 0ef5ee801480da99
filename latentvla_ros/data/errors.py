"""Errors of logs and caches, ROS-free so the cache reader and the CLI import without rclpy."""


class GraphError(RuntimeError):
    """The live ROS graph did not start or did not answer (replay, closed loop)."""


class BagError(RuntimeError):
    """A bag or cache that cannot be read or written; the message says which and why."""
