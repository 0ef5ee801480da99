"""Reading a dataset cache: arrays on disk, no ROS.

A cache is what ``latentvla dataset`` writes from bags (``dataset_builder``):
``dataset.json`` (the logs and their split) and per log a directory with
``frames.npy`` (F, H, W, 3) uint8, ``samples.npz`` and ``meta.json``, plus
``latent_labels.npz`` once ``latentvla label`` has run. Training and
evaluation read caches through this module only, so a GPU box without ROS
trains on a cache built elsewhere.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from latentvla_ros.data.errors import BagError

# 2: per-frame poses, ego status and segments; 3: perturbation marks and the agents in view;
# 4: live (causal) ego status for samples and frames, BEV rasters of simulated logs.
CACHE_VERSION = 4
LABELS_FILE = "latent_labels.npz"


def read_index(cache_dir: Path) -> dict:
    """``dataset.json`` of a cache, with one clear error when it is not a cache."""
    index_path = Path(cache_dir) / "dataset.json"
    if not index_path.is_file():
        raise FileNotFoundError(
            f"{cache_dir}: no dataset.json; build it with `latentvla dataset BAGS --out {cache_dir}`"
        )
    index = json.loads(index_path.read_text())
    if index.get("cache_version") != CACHE_VERSION:
        raise BagError(f"{cache_dir}: cache version {index.get('cache_version')}, expected {CACHE_VERSION}; rebuild it")
    return index


def log_entries(cache_dir: Path, split: str | None = None) -> list[dict]:
    """The index entries of every log (of one split, if given)."""
    logs = [log for log in read_index(cache_dir)["logs"] if split is None or log["split"] == split]
    if not logs:
        raise FileNotFoundError(f"{cache_dir}: no logs in split '{split}'")
    return logs


def rows_at_frames(row_frames: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """(N,) for each of ``frames`` the row of the per-frame array whose frame indices are
    ``row_frames`` (teacher answers, LAM labels), -1 where that array has no row for it."""
    row_frames, frames = np.asarray(row_frames, dtype=np.int64), np.asarray(frames, dtype=np.int64)
    row_of = np.full(max(int(row_frames.max(initial=-1)), int(frames.max(initial=-1))) + 1, -1, dtype=np.int64)
    row_of[row_frames] = np.arange(len(row_frames))
    return row_of[frames]


@dataclass(frozen=True)
class LogSamples:
    """One cached log: ``frames`` (F, H, W, 3) uint8 (memory-mapped) and the sample arrays."""

    name: str
    frames: np.ndarray
    samples: dict
    meta: dict | None = None
    labels: dict | None = None  # latent_labels.npz (``latentvla label``), when written

    @staticmethod
    def load(log_dir: Path) -> LogSamples:
        log_dir = Path(log_dir)
        meta = json.loads((log_dir / "meta.json").read_text())
        if meta.get("cache_version") != CACHE_VERSION:
            raise BagError(
                f"{log_dir}: cache version {meta.get('cache_version')}, expected {CACHE_VERSION}; rebuild it"
            )
        with np.load(log_dir / "samples.npz") as arrays:
            samples = {key: arrays[key] for key in arrays.files}
        labels = None
        if (log_dir / LABELS_FILE).is_file():
            with np.load(log_dir / LABELS_FILE) as arrays:
                labels = {key: arrays[key] for key in arrays.files}
        return LogSamples(log_dir.name, np.load(log_dir / "frames.npy", mmap_mode="r"), samples, meta, labels)

    def __len__(self) -> int:
        return len(self.samples["stamps_ns"])

    def frame_history(self, sample: int) -> np.ndarray:
        """(history_frames, H, W, 3) uint8, oldest first."""
        return np.asarray(self.frames[self.samples["frame_indices"][sample]])
