"""What every node of this package shares: start-up and shutdown, parameter
errors as one log line, the processing-time topic and diagnostics."""

from __future__ import annotations

import gc
import signal
import sys
import time
from collections.abc import Callable

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions
from std_msgs.msg import Float64

from latentvla_ros.environment import ensure_ament_prefix
from latentvla_ros.ros.qos import STATE


class ParameterError(ValueError):
    """A parameter out of range: the node logs it as one line and exits with status 2."""


def make_executor(kind: str, nodes: int):
    """``single``: one thread (the camera-rate model nodes: with the GIL and torch's own
    threads a multi-threaded executor only adds hand-offs; measured p99 camera->trajectory
    43 ms single vs 487 ms multi, bench/pipeline_latency.py); ``events``: rclpy's events
    executor (experimental in Jazzy, no guard conditions; several times faster for plain
    subscriptions); ``multi``: a thread per callback group (slow callbacks, e.g. the
    teacher's, never block the parameter services)."""
    if kind == "events":
        try:
            from rclpy.experimental import EventsExecutor

            return EventsExecutor()
        except ImportError:  # older rclpy (Humble)
            kind = "single"
    if kind == "single":
        return SingleThreadedExecutor()
    return MultiThreadedExecutor(num_threads=2 * nodes)


# A draining node (the recorder) takes in what is still queued after a stop signal: the
# launch stops it the moment the simulator exits, while the last steps are in flight.
DRAIN_IDLE_S = 0.3
DRAIN_MAX_S = 2.0


def run_node(
    make_node: Callable[[], Node | list[Node]],
    argv: list[str] | None = None,
    executor: str = "multi",
    drain: Callable[[Node], int] | None = None,
) -> int:
    """``rclpy.init``, build the node (or nodes: one process, one executor), spin on the
    given kind of executor (:func:`make_executor`) until a node sets ``finished`` or on
    Ctrl-C or an external shutdown, then shut down cleanly. With ``drain`` (a count of the
    work done, e.g. messages written), SIGINT/SIGTERM first let the node keep spinning until
    that count stands still for DRAIN_IDLE_S (at most DRAIN_MAX_S)."""
    ensure_ament_prefix()
    stop_requested: list[int] = []
    if drain is None:
        rclpy.init(args=argv if argv is not None else sys.argv)
    else:
        rclpy.init(args=argv if argv is not None else sys.argv, signal_handler_options=SignalHandlerOptions.NO)
        for stop_signal in (signal.SIGINT, signal.SIGTERM):
            signal.signal(stop_signal, lambda number, _frame: stop_requested.append(number))
    nodes: list[Node] = []
    status = 0
    try:
        made = make_node()
        nodes = made if isinstance(made, list) else [made]
        spinner = make_executor(executor, len(nodes))
        for node in nodes:
            spinner.add_node(node)
        # The models and everything loaded so far live as long as the node: out of the
        # garbage collector's way, so its passes scan only per-message objects (no tail pauses).
        gc.freeze()
        while rclpy.ok() and not stop_requested and not any(getattr(node, "finished", False) for node in nodes):
            spinner.spin_once(timeout_sec=0.1)
        if stop_requested and drain is not None:
            _drain(spinner, lambda: sum(drain(node) for node in nodes))
    except ParameterError as error:
        rclpy.logging.get_logger("latentvla_ros").fatal(f"invalid parameter: {error}")
        status = 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        if rclpy.ok():
            raise
        # A signal (SIGTERM from a launcher) shut the context down mid-spin: a normal exit.
    finally:
        for node in nodes:
            node.destroy_node()
        rclpy.try_shutdown()
    return status


def _drain(spinner, progress: Callable[[], int]) -> None:
    deadline = time.monotonic() + DRAIN_MAX_S
    last, idle_since = progress(), time.monotonic()
    while rclpy.ok() and time.monotonic() < deadline and time.monotonic() - idle_since < DRAIN_IDLE_S:
        spinner.spin_once(timeout_sec=0.05)
        if progress() != last:
            last, idle_since = progress(), time.monotonic()


def declare_defaults(node: Node, config_file: str) -> None:
    """Declare every parameter of ``config/<config_file>`` with the file's value as its default:
    the YAML is the one source of defaults (a launch file's own YAML still overrides them)."""
    import yaml

    from latentvla_ros.environment import package_file

    document = yaml.safe_load(package_file(f"config/{config_file}").read_text())
    parameters = next(iter(document.values()))["ros__parameters"]

    def declare(prefix: str, values: dict) -> None:
        for key, value in values.items():
            if isinstance(value, dict):
                declare(f"{prefix}{key}.", value)
            else:
                node.declare_parameter(f"{prefix}{key}", value)

    declare("", parameters)


def require(condition: bool, message: str) -> None:
    if not condition:
        raise ParameterError(message)


def subscribers_besides(node: Node, topic: str) -> int:
    """Subscriptions on ``topic`` from other nodes: a node that listens to a topic itself
    (the simulator to the trajectory, the replay player to what it records) asks whether
    someone else does too."""
    name = node.get_name()
    return sum(1 for info in node.get_subscriptions_info_by_topic(topic) if info.node_name != name)


def apply_torch_threads(node: Node) -> None:
    """torch's intra-op threads from the ``torch_threads`` parameter (0: torch's default, one
    per core). Process-wide: composed nodes share it. One thread per model node measured best
    on the 2-core target: a second thread woken from idle every frame cost more than it gave
    (bench/pipeline_latency.py)."""
    threads = node.get_parameter("torch_threads").value
    require(threads >= 0, f"torch_threads must be >= 0 (0: one per core), got {threads}")
    if threads:
        import torch

        torch.set_num_threads(threads)


class ProcessingTimePublisher:
    """``~/debug/processing_time_ms`` (std_msgs/Float64), as Autoware's nodes publish it."""

    def __init__(self, node: Node) -> None:
        self._publisher = node.create_publisher(Float64, "~/debug/processing_time_ms", STATE)
        self._started: float | None = None
        self.last_ms = 0.0

    def start(self) -> None:
        self._started = time.perf_counter()

    def stop(self) -> float:
        if self._started is None:
            return 0.0
        self.last_ms = (time.perf_counter() - self._started) * 1e3
        self._publisher.publish(Float64(data=self.last_ms))
        self._started = None
        return self.last_ms


class DiagnosticsPublisher:
    """One ``diagnostic_msgs/DiagnosticArray`` status for the node on ``/diagnostics``, at 1 Hz
    (wall time, so a stalled sim clock shows as stale values, never as silence)."""

    def __init__(self, node: Node, hardware_id: str, collect: Callable[[], tuple[bytes, str, dict]]) -> None:
        """``collect()`` returns (level: DiagnosticStatus.OK/WARN/ERROR/STALE, message, key values)."""
        self._node = node
        self._name = f"{node.get_name()}: {hardware_id}"
        self._hardware_id = hardware_id
        self._collect = collect
        self._publisher = node.create_publisher(DiagnosticArray, "/diagnostics", STATE)
        self._timer = node.create_timer(1.0, self._publish, clock=rclpy.clock.Clock())

    def publish_now(self) -> None:
        """Publish at once (on a change of state), besides the 1 Hz."""
        self._publish()

    def _publish(self) -> None:
        level, message, values = self._collect()
        status = DiagnosticStatus(
            level=level,
            name=self._name,
            message=message,
            hardware_id=self._hardware_id,
            values=[KeyValue(key=key, value=str(value)) for key, value in values.items()],
        )
        array = DiagnosticArray(status=[status])
        array.header.stamp = self._node.get_clock().now().to_msg()
        self._publisher.publish(array)
