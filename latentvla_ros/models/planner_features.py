"""Planner inputs and targets from a dataset cache.

Per sample (a frame with 4 s of future inside continuous odometry): the current camera
frame, the live ego status and the driving command (inputs), the 8 future poses
(target), the BEV raster where the log has one, and what the latent-action sources need:
the student's frame history (frames one latent step apart) and, where the cache has
them, the teacher's outputs at that frame.

Closed-loop training data (DART-style): a sample whose next 4 s contain an injected
perturbation is left out — its future shows the disturbance, not the driver — while the
recovery after an injection ends is kept: it teaches the way back to the lane.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from latentvla_ros.data.cache import LogSamples, log_entries, rows_at_frames
from latentvla_ros.models.planner import BEV_CHANNELS, PlannerConfig
from latentvla_ros.models.student import StudentConfig
from latentvla_ros.models.student_features import resize_frames, student_history
from latentvla_ros.models.teacher.teacher_features import MissingLabelsError
from latentvla_ros.models.teacher.teacher_targets import load_teacher_targets, step_frames_of


@dataclass(frozen=True)
class PlannerSamples:
    """``images`` (F, h, w, 3) uint8 every frame once, at the planner's input size;
    ``student_images`` the same frames at the student's (the same array when the sizes
    match; each network resizes the camera frame itself, as on the car); per sample (N):
    ``frame`` the current frame's row in ``images``; ``history`` (N, history) the student's frames
    (rows of ``student_images``); ``ego_status`` (N, 5);
    ``commands``; ``trajectories`` (N, 8, 3) float32; ``bev`` (N, 3, S, S) uint8 and
    ``has_bev`` (N,); ``teacher`` the teacher's outputs per sample or None; ``log`` (N,) the
    log's number in the cache's order, ``log_frame`` (N,) the current frame's index in its log."""

    images: np.ndarray
    student_images: np.ndarray
    frame: np.ndarray
    history: np.ndarray
    ego_status: np.ndarray
    commands: np.ndarray
    trajectories: np.ndarray
    bev: np.ndarray
    has_bev: np.ndarray
    teacher: dict | None
    log: np.ndarray
    log_frame: np.ndarray

    def __len__(self) -> int:
        return len(self.frame)

    def subset(self, rows: np.ndarray) -> PlannerSamples:
        values = {}
        for field in fields(self):
            value = getattr(self, field.name)
            if field.name in ("images", "student_images"):
                values[field.name] = value
            elif field.name == "teacher":
                values[field.name] = None if value is None else {k: v[rows] for k, v in value.items()}
            else:
                values[field.name] = value[rows]
        return PlannerSamples(**values)


def perturbed_future(stamps_ns: np.ndarray, perturbations: np.ndarray, horizon_s: float) -> np.ndarray:
    """(N,) True where an injection (kind, start, end) overlaps [stamp, stamp + horizon)."""
    if len(perturbations) == 0:
        return np.zeros(len(stamps_ns), dtype=bool)
    start, end = perturbations[:, 1], perturbations[:, 2]
    later = stamps_ns[:, None] + round(horizon_s * 1e9)
    return np.any((start[None, :] < later) & (end[None, :] > stamps_ns[:, None]), axis=1)


def _from_log(
    log: LogSamples,
    log_dir: Path,
    config: PlannerConfig,
    offset: int,
    number: int,
    keep_perturbed: bool,
    student_size: tuple[int, int] | None,
    history_frames: int,
):
    arrays = log.samples
    horizon_s = config.num_poses * config.interval_s
    keep = np.ones(len(arrays["stamps_ns"]), dtype=bool)
    if not keep_perturbed:
        keep &= ~perturbed_future(arrays["stamps_ns"], arrays["perturbations"], horizon_s)
    frame = arrays["frame_indices"][keep, -1]
    size = config.bev_output_px
    if "frame_bev" in arrays and arrays["frame_bev"].shape[-1] == size:
        bev, has_bev = arrays["frame_bev"][frame], np.ones(len(frame), dtype=bool)
    else:
        bev, has_bev = np.zeros((len(frame), BEV_CHANNELS, size, size), np.uint8), np.zeros(len(frame), dtype=bool)
    teacher = None
    targets = load_teacher_targets(log_dir)
    if targets is not None:
        rows = rows_at_frames(targets["frame_t"], frame)
        if np.all(rows >= 0):
            teacher = {
                name: targets[name][rows]
                for name in ("probabilities", "tokens", "action_embeddings", "visual_embedding")
            }
    images = resize_frames(log.frames, config.image_width, config.image_height)
    return PlannerSamples(
        images=images,
        student_images=images if student_size is None else resize_frames(log.frames, student_size[1], student_size[0]),
        frame=frame + offset,
        history=student_history(frame, step_frames_of(log), history_frames) + offset,
        ego_status=arrays["ego_status"][keep].astype(np.float32),
        commands=arrays["command"][keep].astype(np.int64),
        trajectories=arrays["trajectory"][keep].astype(np.float32),
        bev=bev,
        has_bev=has_bev,
        teacher=teacher,
        log=np.full(len(frame), number),
        log_frame=frame,
    )


def load_planner_samples(
    cache_dir: Path,
    config: PlannerConfig,
    split: str | None = None,
    keep_perturbed: bool = False,
    student_size: tuple[int, int] | None = None,
    student_history_frames: int = StudentConfig.history_frames,
) -> PlannerSamples:
    """Samples of every log of a cache (one split, if given); ``teacher`` only when every log has
    teacher outputs. ``student_size`` (height, width): the student's input size, where it
    differs from the planner's (None: the planner's); ``student_history_frames`` how many
    frames it reads."""
    if student_size is not None and tuple(student_size) == (config.image_height, config.image_width):
        student_size = None
    parts, offset = [], 0
    for number, entry in enumerate(log_entries(cache_dir, split)):
        log_dir = Path(cache_dir) / entry["name"]
        log = LogSamples.load(log_dir)
        part = _from_log(log, log_dir, config, offset, number, keep_perturbed, student_size, student_history_frames)
        offset += len(part.images)
        parts.append(part)
    if not sum(len(part) for part in parts):
        raise MissingLabelsError(f"{cache_dir}: no planner sample (4 s of unperturbed future)")
    teacher = None
    if all(part.teacher is not None for part in parts):
        teacher = {name: np.concatenate([part.teacher[name] for part in parts]) for name in parts[0].teacher}
    joined = {
        field.name: np.concatenate([getattr(part, field.name) for part in parts])
        for field in fields(PlannerSamples)
        if field.name not in ("teacher", "student_images")
    }
    student_images = joined["images"]  # one array in memory when both networks read one size
    if student_size is not None:
        student_images = np.concatenate([part.student_images for part in parts])
    return PlannerSamples(**joined, student_images=student_images, teacher=teacher)
