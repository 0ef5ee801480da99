"""The planner's optional Foxglove live view, spoken to over a real WebSocket."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

pytest.importorskip("foxglove")

from helpers.websocket_client import WebSocketClient

from latentvla_ros.core.trajectory import Trajectory
from latentvla_ros.planning.foxglove_stream import (
    CAMERA_TOPIC,
    MARKERS_TOPIC,
    PATH_TOPIC,
    FoxgloveStream,
    FoxgloveUnavailable,
)

TEXT, BINARY = 0x1, 0x2


def _json_until(client: WebSocketClient, op: str) -> dict:
    while True:
        opcode, data = client.receive()
        if opcode == TEXT and json.loads(data)["op"] == op:
            return json.loads(data)


def test_camera_path_and_markers_stream_to_a_websocket_client():
    stream = FoxgloveStream(port=0)  # any free port on loopback
    client = WebSocketClient(stream.port, "foxglove.sdk.v1, foxglove.websocket.v1")
    try:
        assert _json_until(client, "serverInfo")["name"] == "latentvla"
        advertised = {c["topic"]: c for c in _json_until(client, "advertise")["channels"]}
        assert {
            CAMERA_TOPIC: "foxglove.RawImage",
            PATH_TOPIC: "foxglove.PosesInFrame",
            MARKERS_TOPIC: "foxglove.SceneUpdate",
        } == {topic: channel["schemaName"] for topic, channel in advertised.items()}
        client.send_json({"op": "subscribe", "subscriptions": [{"id": 7, "channelId": advertised[CAMERA_TOPIC]["id"]}]})
        image = np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8)
        trajectory = Trajectory(np.array([[2.0 * i, 0.1 * i, 0.01 * i] for i in range(1, 9)]))
        stamp_ns = 5_000_000_123
        received = None
        for _ in range(50):  # the subscription takes effect asynchronously: publish until it has
            stream.publish(stamp_ns, image, trajectory, "brake -> hold speed")
            client.sock.settimeout(0.2)
            try:
                opcode, data = client.receive()
            except TimeoutError:
                continue
            if opcode == BINARY:
                received = data
                break
        assert received is not None, "no camera message after subscribing"
        kind, subscription, log_time = struct.unpack("<BIQ", received[:13])
        assert (kind, subscription, log_time) == (1, 7, stamp_ns)  # messageData, ours, the camera stamp
        assert image.tobytes() in received[13:]  # the frame's pixels, unchanged, inside the RawImage
    finally:
        client.close()
        stream.close()


def test_a_port_in_use_is_one_clear_error():
    first = FoxgloveStream(port=0)
    try:
        with pytest.raises(FoxgloveUnavailable, match=f"127.0.0.1:{first.port}"):
            FoxgloveStream(port=first.port)
    finally:
        first.close()
