"""Test helper run as a separate process: subscribe to topics and print each
first message received as one JSON line, then exit.

Usage: message_listener.py TOPIC=package/msg/Type [...]
"""

from __future__ import annotations

import array
import importlib
import json
import sys

import rclpy
from rclpy.node import Node


def message_to_plain(message: object) -> object:
    """Generated message -> nested dicts/lists of plain Python values."""
    if hasattr(message, "get_fields_and_field_types"):
        return {name: message_to_plain(getattr(message, name)) for name in message.get_fields_and_field_types()}
    if isinstance(message, (list, tuple, array.array)) or type(message).__name__ == "ndarray":
        return [message_to_plain(item) for item in message]
    return message


def import_type(type_name: str) -> type:
    package, _, name = type_name.split("/")
    return getattr(importlib.import_module(f"{package}.msg"), name)


def main() -> int:
    rclpy.init()
    node = Node("message_listener")
    pending = {}
    for argument in sys.argv[1:]:
        topic, type_name = argument.split("=")
        pending[topic] = import_type(type_name)

    def make_callback(topic: str):
        def on_message(message: object) -> None:
            if topic in pending:
                del pending[topic]
                print(json.dumps({"topic": topic, "type": type(message).__name__, "data": message_to_plain(message)}))
                sys.stdout.flush()

        return on_message

    subscriptions = [node.create_subscription(kind, topic, make_callback(topic), 10) for topic, kind in pending.items()]
    print(json.dumps({"ready": [s.topic_name for s in subscriptions]}), flush=True)
    while pending and rclpy.ok():
        rclpy.spin_once(node, timeout_sec=0.1)
    node.destroy_node()
    rclpy.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
