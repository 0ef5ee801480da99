"""Teacher inputs and targets from a labelled dataset cache (``latentvla label`` first).

Per labelled frame t: the camera frames at t and one latent step apart before it (the
earliest repeated where the log starts later), the driving command and ego speed at t
(inputs, all available live), the 12 future ego tokens (the target), and the last
*observed* ego token — the step that ended at t — for the "repeat the current action"
baseline (-1 where that step is not in the log).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from latentvla_ros.core.driving_command import DrivingCommand
from latentvla_ros.data.cache import LogSamples, log_entries
from latentvla_ros.models.teacher.teacher_config import TeacherConfig


class MissingLabelsError(FileNotFoundError):
    """A cache without latent-action labels; the message says how to make them."""


@dataclass(frozen=True)
class TeacherSamples:
    """``frames`` (N, history, h, w, 3) uint8 at the teacher's input size, oldest first; ``commands`` (N,);
    ``speeds_mps`` (N,); ``targets`` (N, T) action codes; ``current_tokens`` (N,) the last
    observed code or -1; ``log`` (N,) which log; ``step_frames`` camera frames per step."""

    frames: np.ndarray
    commands: np.ndarray
    speeds_mps: np.ndarray
    targets: np.ndarray
    current_tokens: np.ndarray
    log: np.ndarray
    step_frames: int

    def __len__(self) -> int:
        return len(self.targets)

    def subset(self, rows: np.ndarray) -> TeacherSamples:
        return TeacherSamples(
            self.frames[rows],
            self.commands[rows],
            self.speeds_mps[rows],
            self.targets[rows],
            self.current_tokens[rows],
            self.log[rows],
            self.step_frames,
        )


def commands_by_frame(log: LogSamples) -> np.ndarray:
    """(F,) the driving command of every frame that starts a sample; UNKNOWN elsewhere."""
    commands = np.full(len(log.samples["frame_stamps_ns"]), int(DrivingCommand.UNKNOWN), dtype=np.int64)
    commands[log.samples["frame_indices"][:, -1]] = log.samples["command"]
    return commands


def teacher_inputs(
    log: LogSamples, frames_t: np.ndarray, step_frames: int, config: TeacherConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What the teacher reads at frames ``frames_t`` (N,): (N, history, h, w, 3) uint8 frames at
    its input size (one latent step apart, oldest first; the log's first frame repeated
    before it starts), (N,) driving commands, (N,) ego speeds."""
    size = (config.image_width, config.image_height)
    if len(frames_t) == 0:
        shape = (0, config.history_frames, config.image_height, config.image_width, 3)
        return np.zeros(shape, np.uint8), np.zeros(0, np.int64), np.zeros(0, np.float32)
    history = frames_t[:, None] + step_frames * np.arange(1 - config.history_frames, 1)[None, :]
    history = np.clip(history, 0, None)
    frames = np.stack(
        [[cv2.resize(np.asarray(log.frames[f]), size, interpolation=cv2.INTER_AREA) for f in row] for row in history]
    ).reshape(len(frames_t), config.history_frames, config.image_height, config.image_width, 3)
    commands = commands_by_frame(log)[frames_t]
    speeds = log.samples["frame_ego_status"][frames_t, 0].astype(np.float32)
    return frames, commands, speeds


def samples_from_log(log: LogSamples, config: TeacherConfig, log_number: int = 0) -> TeacherSamples:
    labels = log.labels
    if labels is None:
        raise MissingLabelsError(f"{log.name}: no latent-action labels; run `latentvla label --data CACHE` first")
    frames_t = labels["future_frames"]
    targets = labels["future_ego_tokens"][:, : config.horizon]
    by_frame = np.full(len(log.samples["frame_stamps_ns"]), -1, dtype=np.int64)
    by_frame[labels["frame_t"]] = labels["ego_tokens"]
    step = int(labels["step_frames"])
    previous = frames_t - step
    current = np.where(previous >= 0, by_frame[np.clip(previous, 0, None)], -1)
    frames, commands, speeds = teacher_inputs(log, frames_t, step, config)
    return TeacherSamples(
        frames=frames,
        commands=commands,
        speeds_mps=speeds,
        targets=targets.astype(np.int64),
        current_tokens=current,
        log=np.full(len(frames_t), log_number),
        step_frames=step,
    )


def load_teacher_samples(cache_dir: Path, config: TeacherConfig, split: str | None = None) -> TeacherSamples:
    """Samples of every labelled log of a cache (one split, if given)."""
    parts = [
        samples_from_log(LogSamples.load(Path(cache_dir) / entry["name"]), config, number)
        for number, entry in enumerate(log_entries(cache_dir, split))
    ]
    parts = [part for part in parts if len(part)]
    if not parts:
        raise MissingLabelsError(f"{cache_dir}: no frame has 12 labelled future steps")
    return TeacherSamples(
        frames=np.concatenate([p.frames for p in parts]),
        commands=np.concatenate([p.commands for p in parts]),
        speeds_mps=np.concatenate([p.speeds_mps for p in parts]),
        targets=np.concatenate([p.targets for p in parts]),
        current_tokens=np.concatenate([p.current_tokens for p in parts]),
        log=np.concatenate([p.log for p in parts]),
        step_frames=parts[0].step_frames,
    )
