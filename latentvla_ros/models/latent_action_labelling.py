"""Turn a logged drive into latent tokens: the per-step ego and environment actions,
and for every frame the sequence of its next ``horizon`` (12) ego actions, which is
what the teacher VLM learns to predict.

Step size: ``LatentActionConfig.step_frames`` camera frames (default 3 at 10 Hz =
0.3 s), so 12 tokens span 3.6 s, about the planner's 4 s horizon.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from latentvla_ros.data.cache import LABELS_FILE, LogSamples, log_entries
from latentvla_ros.models.latent_action import LatentActionModel
from latentvla_ros.models.latent_action_features import LamDataset, LamWindows, device_batches, windows_from_log


@dataclass(frozen=True)
class LatentLabels:
    """Per step: ``frame_t`` (N,) frame index of t, ``ego_tokens``/``environment_tokens`` (N,).
    Per labelled frame: ``future_frames`` (M,) and ``future_ego_tokens`` (M, horizon)."""

    frame_t: np.ndarray
    ego_tokens: np.ndarray
    environment_tokens: np.ndarray
    future_frames: np.ndarray
    future_ego_tokens: np.ndarray
    step_s: float
    step_frames: int  # camera frames per latent step: target k of frame f starts at f + k * step_frames


@torch.no_grad()
def infer_tokens(model: LatentActionModel, windows: LamWindows, batch_size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """(ego tokens, environment tokens) of every window, in eval mode. Only the encoders
    run: labelling needs no decoder, which is about half the cost of a full forward pass."""
    model.eval()
    device = next(model.parameters()).device
    ego, environment = [], []
    for batch in device_batches(LamDataset(windows), batch_size, device):
        ego_tokens, environment_tokens = model.tokens(batch)
        ego.append(ego_tokens.cpu().numpy())
        environment.append(environment_tokens.cpu().numpy())
    return np.concatenate(ego), np.concatenate(environment)


def label_log(model: LatentActionModel, log: LogSamples) -> LatentLabels:
    """Tokens of every valid step of a cached log and 12-token futures where all 12 steps exist."""
    config = model.config
    windows = windows_from_log(log, config)
    if len(windows) == 0:
        empty = np.zeros(0, dtype=np.int64)
        targets = np.zeros((0, config.horizon), np.int64)
        return LatentLabels(empty, empty, empty, empty, targets, windows.step_s, config.step_frames)
    ego_tokens, environment_tokens = infer_tokens(model, windows)
    by_frame = np.full(len(log.samples["frame_stamps_ns"]), -1, dtype=np.int64)
    by_frame[windows.frame_t] = ego_tokens
    offsets = np.arange(config.horizon) * config.step_frames
    candidates = windows.frame_t[windows.frame_t + offsets[-1] < len(by_frame)]
    sequences = by_frame[candidates[:, None] + offsets[None, :]]
    complete = np.all(sequences >= 0, axis=1)
    return LatentLabels(
        frame_t=windows.frame_t,
        ego_tokens=ego_tokens,
        environment_tokens=environment_tokens,
        future_frames=candidates[complete],
        future_ego_tokens=sequences[complete],
        step_s=windows.step_s,
        step_frames=config.step_frames,
    )


def write_labels(log_dir: Path, labels: LatentLabels, model_description: dict) -> Path:
    """``log_dir/latent_labels.npz``: the arrays of ``labels`` plus which model made them
    (written under a temporary name and renamed, so a reader never sees half a file)."""
    path = Path(log_dir) / LABELS_FILE
    partial = path.with_name("latent_labels.partial.npz")
    arrays = {key: np.asarray(value) for key, value in asdict(labels).items()}
    source = {key: model_description.get(key) for key in ("kind", "version", "sha256")}
    np.savez(partial, **arrays, model=np.array(json.dumps(source)))
    partial.replace(path)
    return path


def label_cache(
    model: LatentActionModel, model_description: dict, cache_dir: Path
) -> Iterator[tuple[str, LatentLabels]]:
    """Label every log of a dataset cache in place (both splits); yields (log name, labels)."""
    for entry in log_entries(cache_dir):
        log = LogSamples.load(Path(cache_dir) / entry["name"])
        labels = label_log(model, log)
        write_labels(Path(cache_dir) / entry["name"], labels, model_description)
        yield entry["name"], labels
