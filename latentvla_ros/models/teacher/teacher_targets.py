"""The teacher's answers for every frame of a cache: what the student distils and what
the undistilled planner reads.

``write_teacher_targets`` runs the teacher once over each log's frames (inside continuous
odometry) and writes ``teacher_outputs.npz`` beside the log's samples: per frame
``frame_t``, ``probabilities`` (N, 12, 16), ``tokens`` (N, 12), ``action_embeddings``
(N, 12, H) and ``visual_embedding`` (N, H) (float16), plus the teacher's identity. A log
whose file was written by the same teacher is skipped, so a rerun is cheap.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from latentvla_ros.data.cache import LogSamples, log_entries
from latentvla_ros.models.teacher.teacher_features import MissingLabelsError, teacher_inputs
from latentvla_ros.models.teacher.teacher_model import LatentActionTeacher

TARGETS_FILE = "teacher_outputs.npz"
# One latent step when a log has no labels to say it: 3 camera frames at 10 Hz (the LAM's step).
DEFAULT_STEP_FRAMES = 3


def teacher_identity(teacher: LatentActionTeacher) -> str:
    """Version and weights digest: what makes two teachers' outputs the same."""
    digest = (teacher.description.get("sha256") or {}).get("model.safetensors", "")
    return json.dumps({"version": teacher.version, "sha256": digest}, sort_keys=True)


def step_frames_of(log: LogSamples) -> int:
    return int(log.labels["step_frames"]) if log.labels is not None else DEFAULT_STEP_FRAMES


def predict_log(teacher: LatentActionTeacher, log: LogSamples, batch_size: int = 32, progress=None) -> dict:
    """The teacher's outputs at every frame of ``log`` inside continuous odometry."""
    frames_t = np.flatnonzero(log.samples["frame_segment"] >= 0)
    step = step_frames_of(log)
    parts = []
    with torch.inference_mode():
        for start in range(0, len(frames_t), batch_size):
            chunk = frames_t[start : start + batch_size]
            output = teacher.predict(*teacher_inputs(log, chunk, step, teacher.config))
            parts.append(output)
            if progress is not None:
                progress.update(len(chunk))
    hidden = teacher.hidden_size
    horizon, codes = teacher.config.horizon, teacher.config.codebook_size

    def joined(name: str, shape: tuple, dtype) -> np.ndarray:
        if not parts:
            return np.zeros((0, *shape), dtype)
        return np.concatenate([getattr(part, name).numpy() for part in parts]).astype(dtype)

    return {
        "frame_t": frames_t.astype(np.int64),
        "probabilities": joined("probabilities", (horizon, codes), np.float32),
        "tokens": joined("tokens", (horizon,), np.uint8),
        "action_embeddings": joined("action_embeddings", (horizon, hidden), np.float16),
        "visual_embedding": joined("visual_embedding", (hidden,), np.float16),
        "step_frames": np.int64(step),
        "teacher": np.array(teacher_identity(teacher)),
    }


def write_teacher_targets(
    teacher: LatentActionTeacher, cache_dir: Path, batch_size: int = 32
) -> Iterator[tuple[str, int, bool]]:
    """Per log of the cache: (name, frames, written now or already current)."""
    identity = teacher_identity(teacher)
    logs = [LogSamples.load(Path(cache_dir) / entry["name"]) for entry in log_entries(cache_dir)]
    pending = []
    for log in logs:
        existing = load_teacher_targets(Path(cache_dir) / log.name)
        if existing is not None and str(existing["teacher"]) == identity:
            yield log.name, len(existing["frame_t"]), False
        else:
            pending.append(log)
    total = sum(int((log.samples["frame_segment"] >= 0).sum()) for log in pending)
    with tqdm(total=total, desc="teacher outputs", unit="frame", mininterval=5.0, disable=not pending) as progress:
        for log in pending:
            outputs = predict_log(teacher, log, batch_size, progress)
            log_dir = Path(cache_dir) / log.name
            partial = log_dir / f"{TARGETS_FILE}.partial.npz"
            np.savez(partial, **outputs)
            partial.replace(log_dir / TARGETS_FILE)  # whole or absent, never half-written
            yield log.name, len(outputs["frame_t"]), True


def load_teacher_targets(log_dir: Path) -> dict | None:
    path = Path(log_dir) / TARGETS_FILE
    if not path.is_file():
        return None
    with np.load(path) as arrays:
        return {key: arrays[key] for key in arrays.files}


def require_teacher_targets(log_dir: Path) -> dict:
    targets = load_teacher_targets(log_dir)
    if targets is None:
        raise MissingLabelsError(
            f"{log_dir}: no teacher outputs; `latentvla train student --data CACHE --teacher TEACHER` (or "
            "`latentvla eval student` with --teacher) writes them first"
        )
    return targets
