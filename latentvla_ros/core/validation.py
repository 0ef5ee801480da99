"""One error type for malformed input, and the checks that raise it.

Every message names the offending field and what was expected, so a node can
log it as one line and carry on with the next message. The loss-weight check
(a plain ValueError) serves the model and training configurations alike.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


class InputError(ValueError):
    """Malformed input: the message names the field and the expected value."""

    def __init__(self, field: str, expected: str, got: object) -> None:
        self.field = field
        self.expected = expected
        self.got = got
        super().__init__(f"{field}: expected {expected}, got {got!r}")


def require_finite(field: str, values: object) -> np.ndarray:
    """Return ``values`` as a float64 array; raise if any entry is NaN or infinite."""
    array = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(array)):
        bad = np.argwhere(~np.isfinite(array))
        where = tuple(int(i) for i in bad[0]) if array.ndim else ()
        raise InputError(field, "finite values (no NaN/inf)", f"{array[where] if where else array} at index {where}")
    return array


def require_shape(field: str, array: np.ndarray, shape: Sequence[int | None]) -> np.ndarray:
    """Raise unless ``array.shape`` matches ``shape`` (``None`` matches any length)."""
    expected = tuple(shape)
    ok = array.ndim == len(expected) and all(
        want is None or want == have for want, have in zip(expected, array.shape, strict=True)
    )
    if not ok:
        pretty = "(" + ", ".join("N" if want is None else str(want) for want in expected) + ")"
        raise InputError(field, f"shape {pretty}", array.shape)
    return array


def require_frame_id(field: str, frame_id: str, expected: str) -> str:
    """Raise unless ``frame_id`` equals the configured ``expected`` frame."""
    if frame_id != expected:
        raise InputError(field, f"frame '{expected}'", frame_id)
    return frame_id


def check_loss_weight(name: str, value: float) -> float:
    """``value`` if it can weight a loss term (0 turns the term off); one clear error otherwise.
    NaN needs its own test: it compares false with everything, so ``< 0`` lets it through."""
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0 (0: off), got {value}")
    return value
