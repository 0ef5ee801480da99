"""Fitting any camera to a model's input (ROS-free): crop by fractions, then the model resizes.

A team's camera rarely has the simulator's 2:1 frame; cropping the hood at the bottom
and sky at the top (fractions of the height, and of the width at the sides) brings it
close to the model's aspect before the resize, instead of squashing it.
"""

from __future__ import annotations

import numpy as np

from latentvla_ros.core.validation import InputError


def validate_crop(crop: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    """(top, bottom, left, right) fractions in [0, 1) that leave some image."""
    if len(crop) != 4 or any(not 0.0 <= c < 1.0 for c in crop) or crop[0] + crop[1] >= 1 or crop[2] + crop[3] >= 1:
        raise ValueError(
            f"crop: expected [top, bottom, left, right] fractions in [0, 1) that leave an image, got {list(crop)}"
        )
    return tuple(float(c) for c in crop)


def crop_frame(image: np.ndarray, crop: tuple[float, float, float, float]) -> np.ndarray:
    """(H, W, 3) -> the crop; unchanged when every fraction is 0."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise InputError("camera image", "(H, W, 3)", image.shape)
    top, bottom, left, right = crop
    if not any(crop):
        return image
    height, width = image.shape[:2]
    rows = slice(round(top * height), height - round(bottom * height))
    columns = slice(round(left * width), width - round(right * width))
    return np.ascontiguousarray(image[rows, columns])
