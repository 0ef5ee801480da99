"""A minimal dataset cache, as `latentvla dataset` writes it, for LAM tests."""

import json
from pathlib import Path

import numpy as np

from latentvla_ros.data.cache import CACHE_VERSION


def write_cache(root: Path, frame_shape=(64, 128), period_ns=100_000_000, frames=60, constant=False) -> Path:
    """A minimal dataset cache as `latentvla dataset` writes it (random frames; ``constant``:
    every frame the same grey and no motion, data that can only give a one-code codebook)."""
    log = root / "log_a"
    log.mkdir(parents=True)
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 255, size=(frames, *frame_shape, 3), dtype=np.uint8)
    np.save(log / "frames.npy", np.full_like(pixels, 128) if constant else pixels)
    stamps = np.arange(frames, dtype=np.int64) * period_ns
    speed = 0.0 if constant else 10.0
    poses = np.column_stack([np.arange(frames) * speed * period_ns * 1e-9, np.zeros(frames), np.zeros(frames)])
    status = np.tile(np.array([speed, 0, 0, 0, 0], dtype=np.float32), (frames, 1))
    np.savez(
        log / "samples.npz",
        frame_stamps_ns=stamps,
        frame_poses=poses,
        frame_ego_status=status,
        frame_segment=np.zeros(frames, dtype=np.int32),
        frame_perturbation=np.where(np.arange(frames) % 20 < 5, 1, -1).astype(np.int8),
        perturbations=np.zeros((0, 3), dtype=np.int64),
        frame_agents_in_view=rng.integers(0, 3, frames).astype(np.int16),
        frame_nearest_agent=rng.normal(size=(frames, 4)).astype(np.float32),
        # Samples as the dataset builder writes them: 4 history frames 0.5 s apart, a command each.
        frame_indices=np.stack([np.arange(15, frames) + offset for offset in (-15, -10, -5, 0)], axis=1),
        command=(np.arange(15, frames) // 10 % 4).astype(np.uint8),
        stamps_ns=stamps[15:],
        # What the planner reads: the live ego status and 8 future poses 0.5 s apart.
        frame_ego_status_live=status,
        ego_status=status[15:],
        trajectory=np.tile(
            np.column_stack([np.arange(1, 9) * 0.5 * speed, np.zeros(8), np.zeros(8)]), (frames - 15, 1, 1)
        ),
        frame_bev=rng.integers(0, 2, size=(frames, 3, 32, 32), dtype=np.uint8),
    )
    samples = frames - 15
    (log / "meta.json").write_text(
        json.dumps({"cache_version": CACHE_VERSION, "frame_shape": [*frame_shape, 3], "samples": samples})
    )
    (root / "dataset.json").write_text(
        json.dumps(
            {
                "cache_version": CACHE_VERSION,
                "logs": [
                    {"name": "log_a", "split": "train", "samples": samples},
                    {"name": "log_a", "split": "val", "samples": samples},
                ],
            }
        )
    )
    return root
