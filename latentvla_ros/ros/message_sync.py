"""``message_filters`` where it is installed; where not (the pip path), a small
stand-in with the same API — ``Subscriber(node, msg_type, topic, qos_profile=...)``
and ``ApproximateTimeSynchronizer(subscribers, queue_size, slop)`` with
``registerCallback`` — over :class:`~latentvla_ros.core.time_sync.ApproximateTimeMatcher`.
"""

from __future__ import annotations

from latentvla_ros.core.time_sync import ApproximateTimeMatcher

try:
    from message_filters import ApproximateTimeSynchronizer, Subscriber

    USING_MESSAGE_FILTERS = True
except ImportError:
    USING_MESSAGE_FILTERS = False

    class Subscriber:
        def __init__(self, node, msg_type, topic: str, qos_profile=10, **kwargs) -> None:
            self.node = node
            self.topic = topic
            self._listeners = []
            self.sub = node.create_subscription(msg_type, topic, self._on_message, qos_profile, **kwargs)

        def _on_message(self, message) -> None:
            for listener in self._listeners:
                listener(message)

        def registerCallback(self, callback) -> None:
            self._listeners.append(callback)

    class ApproximateTimeSynchronizer:
        def __init__(self, fs, queue_size: int, slop: float, allow_headerless: bool = False) -> None:
            if allow_headerless:
                raise ValueError("allow_headerless is not supported: every synchronized message needs a header stamp")
            self._matcher = ApproximateTimeMatcher(len(fs), queue_size, slop)
            for index, subscriber in enumerate(fs):
                subscriber.registerCallback(lambda message, index=index: self._add(index, message))

        def _add(self, index: int, message) -> None:
            stamp = message.header.stamp
            self._matcher.add(index, stamp.sec * 1_000_000_000 + stamp.nanosec, message)

        def registerCallback(self, callback) -> None:
            self._matcher.register_callback(callback)


__all__ = ["USING_MESSAGE_FILTERS", "ApproximateTimeSynchronizer", "Subscriber"]
