"""rosbag2 files in and out (MCAP or sqlite3), through ``rosbags``.

Messages are serialized and deserialized by rclpy (the same CDR the
middleware sends), so every bag message goes through the one conversions
module; rosbags supplies the container and the message definitions stored
in it (ROS 2 Jazzy's standard types plus this package's ``msg/``), so
``ros2 bag info/play`` and other readers accept the files.
"""

from __future__ import annotations

import importlib
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from rclpy.serialization import deserialize_message, serialize_message
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from latentvla_ros.data.errors import BagError

PACKAGE = "latentvla_ros"


__all__ = ["BagError", "BagMessage", "BagWriter", "bag_topics", "open_bag", "read_messages"]


def interface_dir() -> Path:
    """This package's ``msg/`` directory: installed share (ament index) or the source tree."""
    try:
        from ament_index_python.packages import get_package_share_directory

        installed = Path(get_package_share_directory(PACKAGE)) / "msg"
        if installed.is_dir():
            return installed
    except (ImportError, LookupError, ValueError, OSError):  # no ament index: the source tree
        pass
    return Path(__file__).resolve().parents[2] / "msg"


def project_typestore():
    """Jazzy's standard message types plus this package's interfaces."""
    typestore = get_typestore(Stores.ROS2_JAZZY)
    types = {}
    for path in sorted(interface_dir().glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(), f"{PACKAGE}/msg/{path.stem}"))
    typestore.register(types)
    return typestore


def message_class(type_name: str) -> type:
    """``pkg/msg/Type`` -> the rclpy message class."""
    package, kind, name = type_name.split("/")
    return getattr(importlib.import_module(f"{package}.{kind}"), name)


def type_name_of(message: object) -> str:
    module = type(message).__module__.split(".")  # pkg.msg._module
    return f"{module[0]}/{module[1]}/{type(message).__name__}"


def _qos(latched: bool) -> Qos:
    """The QoS a recorder saw offered: reliable, transient-local for latched topics."""
    never = QosTime(sec=0x7FFFFFFF, nsec=0xFFFFFFFF)
    return Qos(
        history=QosHistory.KEEP_LAST,
        depth=1 if latched else 10,
        reliability=QosReliability.RELIABLE,
        durability=QosDurability.TRANSIENT_LOCAL if latched else QosDurability.VOLATILE,
        deadline=never,
        lifespan=never,
        liveliness=QosLiveliness.AUTOMATIC,
        liveliness_lease_duration=never,
        avoid_ros_namespace_conventions=False,
    )


class BagWriter:
    """Write rclpy messages to a rosbag2 (MCAP by default).

    The bag is written into ``<path>.partial`` and renamed to ``path`` only
    when closed without error, so an interrupted recording never leaves a
    bag that looks complete.
    """

    def __init__(self, path: str | Path, storage: str = "mcap", latched_topics: Sequence[str] = ("/tf_static",)):
        self.path = Path(path)
        if self.path.exists():
            raise BagError(f"{self.path}: exists already; choose another output directory")
        self._partial = self.path.with_name(self.path.name + ".partial")
        shutil.rmtree(self._partial, ignore_errors=True)
        plugin = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}[storage]
        self._writer = Writer(self._partial, version=9, storage_plugin=plugin)
        self._typestore = project_typestore()
        self._latched = set(latched_topics)
        self._connections: dict[str, object] = {}
        self.message_count = 0

    def __enter__(self) -> BagWriter:
        self._writer.open()
        return self

    def __exit__(self, error_type, error, traceback) -> None:
        self._writer.close()
        if error_type is None:
            self._drop_partial_from_file_names()
            self._partial.rename(self.path)
        else:
            shutil.rmtree(self._partial, ignore_errors=True)

    def _drop_partial_from_file_names(self) -> None:
        """The storage files inside are named after the folder (``NAME.partial.mcap``): rename
        them to ``NAME.mcap`` and point metadata.yaml at the new names before the folder is."""
        old, new = self._partial.name, self.path.name
        for file in self._partial.iterdir():
            if file.name.startswith(old) and file.name != "metadata.yaml":
                file.rename(file.with_name(new + file.name[len(old) :]))
        metadata = self._partial / "metadata.yaml"
        text = metadata.read_text()
        metadata.write_text(text.replace(f"{old}.", f"{new}.").replace(f"{old}_", f"{new}_"))

    def write(self, topic: str, stamp_ns: int, message: object) -> None:
        self.write_serialized(topic, type_name_of(message), stamp_ns, serialize_message(message))

    def write_serialized(self, topic: str, type_name: str, stamp_ns: int, data: bytes) -> None:
        """Write already-serialized CDR ``data`` (e.g. from a raw subscription)."""
        connection = self._connections.get(topic)
        if connection is None:
            connection = self._writer.add_connection(
                topic, type_name, typestore=self._typestore, offered_qos_profiles=[_qos(topic in self._latched)]
            )
            self._connections[topic] = connection
        self._writer.write(connection, int(stamp_ns), data)
        self.message_count += 1


@dataclass(frozen=True)
class BagMessage:
    topic: str
    type_name: str
    stamp_ns: int
    message: object


def open_bag(path: str | Path) -> Reader:
    """Open a rosbag2 directory (or single .mcap/.db3 file), with one clear error if it is not one."""
    path = Path(path)
    if not path.exists():
        raise BagError(f"{path}: no such bag")
    try:
        reader = Reader(path)
        reader.open()
    except Exception as error:  # rosbags raises several types for corrupt or foreign files
        raise BagError(f"{path}: not a readable rosbag2 ({type(error).__name__}: {error})") from error
    return reader


def bag_topics(path: str | Path) -> dict[str, tuple[str, int]]:
    """topic -> (type name, message count)."""
    reader = open_bag(path)
    try:
        return {topic: (info.msgtype, info.msgcount) for topic, info in reader.topics.items()}
    finally:
        reader.close()


def require_topic_types(bag: str | Path, available: dict, expected: dict[str, tuple[str, ...]]) -> None:
    """A topic of the wrong type is one line naming it, its type and the expected ones, not an
    AttributeError deep inside; topics the bag does not have are not checked here."""
    for topic, types in expected.items():
        if topic in available and available[topic][0] not in types:
            raise BagError(f"{bag}: topic {topic} is {available[topic][0]}, expected {' or '.join(types)}")


def camera_topic_in(available: dict, requested: str) -> str:
    """The camera topic to read: the one asked for, or the raw image where the default
    compressed one is absent (the default accepts raw images too)."""
    from latentvla_ros import topics

    if requested not in available and requested == topics.CAMERA_IMAGE_COMPRESSED:
        return topics.CAMERA_IMAGE
    return requested


def read_messages(path: str | Path, topics: Sequence[str]) -> Iterator[BagMessage]:
    """Deserialized messages of ``topics`` in log-time order. Every topic must be in the bag."""
    reader = open_bag(path)
    try:
        available = {connection.topic: connection.msgtype for connection in reader.connections}
        missing = [topic for topic in topics if topic not in available]
        if missing:
            listing = ", ".join(f"{topic} ({kind})" for topic, kind in sorted(available.items())) or "none"
            raise BagError(f"{path}: missing topic(s) {', '.join(missing)}; the bag has: {listing}")
        classes = {topic: message_class(available[topic]) for topic in topics}
        connections = [c for c in reader.connections if c.topic in classes]
        try:
            for connection, stamp_ns, data in reader.messages(connections=connections):
                message = deserialize_message(bytes(data), classes[connection.topic])
                yield BagMessage(connection.topic, connection.msgtype, stamp_ns, message)
        except BagError:
            raise
        except Exception as error:
            raise BagError(f"{path}: corrupt or truncated ({type(error).__name__}: {error})") from error
    finally:
        reader.close()
