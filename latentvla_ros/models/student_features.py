"""Student inputs and distillation targets from a cache with teacher outputs.

Per frame the teacher answered (``teacher_targets``): the frames at the student's input
size (the current one and one latent step apart before it), the live ego status and the
driving command (inputs, all available on the car); the teacher's distributions and
embeddings (targets); and the LAM's own 12 future tokens where the log has them (-1
elsewhere; the optional cross-entropy term).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from latentvla_ros.data.cache import LogSamples, log_entries, rows_at_frames
from latentvla_ros.models.student import StudentConfig
from latentvla_ros.models.teacher.teacher_features import MissingLabelsError, commands_by_frame
from latentvla_ros.models.teacher.teacher_targets import require_teacher_targets


def resize_frames(frames: np.ndarray, width: int, height: int) -> np.ndarray:
    """(N, H, W, 3) uint8 -> (N, height, width, 3) uint8 by area averaging (what the nodes do too)."""
    if frames.shape[1:3] == (height, width):
        return np.asarray(frames)
    return np.stack([cv2.resize(np.asarray(f), (width, height), interpolation=cv2.INTER_AREA) for f in frames])


@dataclass(frozen=True)
class StudentSamples:
    """``images`` (F, h, w, 3) uint8: every frame once; ``history`` (N, history) rows of ``images``
    per sample, oldest first; ``ego_status`` (N, 5); ``commands`` (N,); teacher targets
    ``probabilities`` (N, T, K), ``action_embeddings`` (N, T, E), ``visual_embedding`` (N, E);
    ``lam_targets`` (N, T) the LAM's future tokens or -1; ``log`` (N,)."""

    images: np.ndarray
    history: np.ndarray
    ego_status: np.ndarray
    commands: np.ndarray
    probabilities: np.ndarray
    action_embeddings: np.ndarray
    visual_embedding: np.ndarray
    lam_targets: np.ndarray
    log: np.ndarray

    def __len__(self) -> int:
        return len(self.history)

    def subset(self, rows: np.ndarray) -> StudentSamples:
        return StudentSamples(
            self.images,
            self.history[rows],
            self.ego_status[rows],
            self.commands[rows],
            self.probabilities[rows],
            self.action_embeddings[rows],
            self.visual_embedding[rows],
            self.lam_targets[rows],
            self.log[rows],
        )

    def batch(self, rows: np.ndarray) -> dict:
        """Numpy arrays for ``rows``: the student's inputs and the targets."""
        return {
            "frames": self.images[self.history[rows]],
            "ego_status": self.ego_status[rows],
            "commands": self.commands[rows],
            "probabilities": self.probabilities[rows],
            "action_embeddings": self.action_embeddings[rows].astype(np.float32),
            "visual_embedding": self.visual_embedding[rows].astype(np.float32),
            "lam_targets": self.lam_targets[rows],
        }


def student_history(frames_t: np.ndarray, step_frames: int, history_frames: int) -> np.ndarray:
    """(N, history) frame indices: one latent step apart, oldest first, clipped at the log's start."""
    offsets = step_frames * np.arange(1 - history_frames, 1)
    return np.clip(frames_t[:, None] + offsets[None, :], 0, None)


def _from_log(log: LogSamples, log_dir: Path, config: StudentConfig, image_offset: int, number: int):
    targets = require_teacher_targets(log_dir)
    frames_t = targets["frame_t"]
    step = int(targets["step_frames"])
    lam = np.full((len(frames_t), config.horizon), -1, dtype=np.int64)
    if log.labels is not None and len(log.labels["future_frames"]):
        rows = rows_at_frames(log.labels["future_frames"], frames_t)
        found = rows >= 0
        lam[found] = log.labels["future_ego_tokens"][rows[found], : config.horizon]
    images = resize_frames(log.frames, config.image_width, config.image_height)
    samples = StudentSamples(
        images=images,
        history=student_history(frames_t, step, config.history_frames) + image_offset,
        ego_status=log.samples["frame_ego_status_live"][frames_t].astype(np.float32),
        commands=commands_by_frame(log)[frames_t],
        probabilities=targets["probabilities"].astype(np.float32),
        action_embeddings=targets["action_embeddings"],
        visual_embedding=targets["visual_embedding"],
        lam_targets=lam,
        log=np.full(len(frames_t), number),
    )
    return samples


def load_student_samples(cache_dir: Path, config: StudentConfig, split: str | None = None) -> StudentSamples:
    """Samples of every log of a cache (one split, if given) that has teacher outputs."""
    parts, offset = [], 0
    for number, entry in enumerate(log_entries(cache_dir, split)):
        log_dir = Path(cache_dir) / entry["name"]
        part = _from_log(LogSamples.load(log_dir), log_dir, config, offset, number)
        offset += len(part.images)
        parts.append(part)
    if not sum(len(part) for part in parts):  # every part's images stay: histories index into them
        raise MissingLabelsError(f"{cache_dir}: no frame has teacher outputs")
    return StudentSamples(
        images=np.concatenate([p.images for p in parts]),
        **{
            name: np.concatenate([getattr(p, name) for p in parts])
            for name in (
                "history",
                "ego_status",
                "commands",
                "probabilities",
                "action_embeddings",
                "visual_embedding",
                "lam_targets",
                "log",
            )
        },
    )
