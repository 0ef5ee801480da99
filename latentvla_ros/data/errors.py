"""Errors of logs and caches, ROS-free so the cache reader and the CLI import without rclpy."""


class BagError(RuntimeError):
    """A bag or cache that cannot be read or written; the message says which and why."""
