"""LAM inputs from the cached dataset: frame windows t-s, t, t+s with the ego motion.

Everything here comes from the camera and odometry only: the ego motion from
t to t+s (relative pose), the ego status at t, and a *maneuver* label (binned
acceleration x yaw rate over the step) used only to evaluate how well the
tokens disentangle ego motion, never for training.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from latentvla_ros.core.se2 import relative_poses
from latentvla_ros.data.cache import LogSamples, log_entries
from latentvla_ros.models.latent_action import EGO_MOTION_SCALE as MODEL_EGO_MOTION_SCALE
from latentvla_ros.models.latent_action import EGO_SPEED_SCALE_MPS, LatentActionConfig

# Scales that bring the conditioning inputs to order one.
EGO_MOTION_SCALE = np.array(MODEL_EGO_MOTION_SCALE, dtype=np.float32)  # dx m, dy m, dyaw rad per step
EGO_STATE_SCALE = np.array([EGO_SPEED_SCALE_MPS, 1.0, 2.0, 2.0, 0.3], dtype=np.float32)  # vx, vy, ax, ay, yaw rate
# Maneuver bins: acceleration (m/s^2) brake / hold / accelerate x yaw rate (rad/s) right / straight / left.
ACCELERATION_EDGES = (-0.6, 0.3)
YAW_RATE_EDGES = (-0.06, 0.06)
MANEUVER_NAMES = tuple(f"{a}+{y}" for a in ("brake", "hold", "accelerate") for y in ("right", "straight", "left"))
# Other agents' motion bins (evaluation of the environment action, from ground truth where a log has it):
# none in view, else the nearest in-view agent's velocity relative to the ego, in the ego frame:
# closing / steady / opening (m/s) x moving right / not / left (m/s).
AGENT_RELATIVE_SPEED_EDGES = (-1.5, 1.5)
AGENT_LATERAL_SPEED_EDGES = (-0.5, 0.5)
NO_AGENT_IN_VIEW = 0
UNKNOWN_AGENTS = -1
FRAME_PERIOD_TOLERANCE = 0.35  # a step's duration may differ this fraction from nominal


class FrameSizeError(ValueError):
    """Data whose frames do not match the model's configuration."""


@dataclass(frozen=True)
class LamWindows:
    """``frames`` (F, h, w, 3) uint8 at the model's size; ``indices`` (N, history + 2) into them
    (t - k s ... t, t + s); ``ego_motion`` (N, 3), ``ego_state`` (N, 5) float32; ``maneuver`` (N,);
    ``acceleration``, ``yaw_rate`` (N,) over the step; ``log`` (N,) which log."""

    frames: np.ndarray
    indices: np.ndarray
    ego_motion: np.ndarray
    ego_state: np.ndarray
    maneuver: np.ndarray
    acceleration: np.ndarray
    yaw_rate: np.ndarray
    log: np.ndarray
    step_s: float
    frame_t: np.ndarray | None = None  # (N,) index of frame t in its log's frames
    speed: np.ndarray | None = None  # (N,) m/s at t
    speed_change: np.ndarray | None = None  # (N,) m/s from t to t+1
    agents_motion: np.ndarray | None = None  # (N,) agent-motion bin at t; UNKNOWN_AGENTS without ground truth
    perturbed: np.ndarray | None = None  # (N,) an injected perturbation is active at t or t+1
    log_names: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.indices)


def maneuver_labels(acceleration: np.ndarray, yaw_rate: np.ndarray) -> np.ndarray:
    """(N,) class in 0..8 = 3 * acceleration bin + yaw-rate bin (see MANEUVER_NAMES)."""
    return 3 * np.digitize(acceleration, ACCELERATION_EDGES) + np.digitize(yaw_rate, YAW_RATE_EDGES)


def agent_motion_labels(agents_in_view: np.ndarray, nearest_agent: np.ndarray) -> np.ndarray:
    """(N,) bin: UNKNOWN_AGENTS (-1) without ground truth, NO_AGENT_IN_VIEW (0), else
    1 + 3 * relative-speed bin + lateral-speed bin of the nearest agent in view."""
    relative = np.nan_to_num(nearest_agent[:, 2])
    lateral = np.nan_to_num(nearest_agent[:, 3])
    moving = 1 + 3 * np.digitize(relative, AGENT_RELATIVE_SPEED_EDGES) + np.digitize(lateral, AGENT_LATERAL_SPEED_EDGES)
    labels = np.where(agents_in_view > 0, moving, NO_AGENT_IN_VIEW)
    return np.where(agents_in_view < 0, UNKNOWN_AGENTS, labels).astype(np.int64)


def resize_frames(frames: np.ndarray, config: LatentActionConfig) -> np.ndarray:
    size = (config.frame_width, config.frame_height)
    return np.stack([cv2.resize(np.asarray(frame), size, interpolation=cv2.INTER_AREA) for frame in frames])


def windows_from_log(log: LogSamples, config: LatentActionConfig, log_number: int = 0) -> LamWindows:
    """Every window of a cached log whose frames are consecutive steps inside one segment."""
    arrays = log.samples
    stamps = arrays["frame_stamps_ns"]
    segment = arrays["frame_segment"]
    step = config.step_frames
    first = step * config.history_frames
    candidates = np.arange(first, len(stamps) - step)
    offsets = np.arange(-config.history_frames, 2) * step  # -k s .. 0, +s
    indices = candidates[:, None] + offsets[None, :]
    period_ns = float(np.median(np.diff(stamps))) if len(stamps) > 1 else 1e8
    nominal_ns = step * period_ns
    gaps = np.diff(stamps[indices], axis=1)
    valid = np.all(np.abs(gaps - nominal_ns) <= FRAME_PERIOD_TOLERANCE * nominal_ns, axis=1)
    valid &= np.all(segment[indices] == segment[indices[:, :1]], axis=1) & (segment[indices[:, 0]] >= 0)
    indices = indices[valid]
    now, later = indices[:, -2], indices[:, -1]
    poses = arrays["frame_poses"]
    motion = (
        np.stack([relative_poses(poses[a], poses[b]) for a, b in zip(now, later, strict=True)])
        if len(now)
        else np.zeros((0, 3))
    )
    step_s = (stamps[later] - stamps[now]) * 1e-9
    status = arrays["frame_ego_status"]
    speed_change = status[later, 0] - status[now, 0]
    acceleration = speed_change / np.maximum(step_s, 1e-6)
    if "frame_agents_in_view" in arrays:
        agents = agent_motion_labels(arrays["frame_agents_in_view"][now], arrays["frame_nearest_agent"][now])
        perturbed = (arrays["frame_perturbation"][now] >= 0) | (arrays["frame_perturbation"][later] >= 0)
    else:
        agents = np.full(len(now), UNKNOWN_AGENTS, dtype=np.int64)
        perturbed = np.zeros(len(now), dtype=bool)
    yaw_rate = motion[:, 2] / np.maximum(step_s, 1e-6)
    used = np.unique(indices)
    remap = np.full(len(stamps), -1)
    remap[used] = np.arange(len(used))
    return LamWindows(
        frames=resize_frames(log.frames[used], config)
        if len(used)
        else np.zeros((0, config.frame_height, config.frame_width, 3), np.uint8),
        indices=remap[indices],
        ego_motion=(motion / EGO_MOTION_SCALE).astype(np.float32),
        ego_state=(status[now] / EGO_STATE_SCALE).astype(np.float32),
        maneuver=maneuver_labels(acceleration, yaw_rate),
        acceleration=acceleration.astype(np.float32),
        yaw_rate=yaw_rate.astype(np.float32),
        log=np.full(len(indices), log_number),
        step_s=float(np.median(step_s)) if len(step_s) else step * period_ns * 1e-9,
        frame_t=now,
        speed=status[now, 0].astype(np.float32),
        speed_change=speed_change.astype(np.float32),
        agents_motion=agents,
        perturbed=perturbed,
        log_names=(log.name,),
    )


def concatenate(windows: list[LamWindows]) -> LamWindows:
    offsets = np.cumsum([0] + [len(w.frames) for w in windows[:-1]])
    return LamWindows(
        frames=np.concatenate([w.frames for w in windows]),
        indices=np.concatenate([w.indices + offset for w, offset in zip(windows, offsets, strict=True)]),
        ego_motion=np.concatenate([w.ego_motion for w in windows]),
        ego_state=np.concatenate([w.ego_state for w in windows]),
        maneuver=np.concatenate([w.maneuver for w in windows]),
        acceleration=np.concatenate([w.acceleration for w in windows]),
        yaw_rate=np.concatenate([w.yaw_rate for w in windows]),
        log=np.concatenate([w.log for w in windows]),
        step_s=windows[0].step_s,
        frame_t=np.concatenate([w.frame_t for w in windows]),
        speed=np.concatenate([w.speed for w in windows]),
        speed_change=np.concatenate([w.speed_change for w in windows]),
        agents_motion=np.concatenate([w.agents_motion for w in windows]),
        perturbed=np.concatenate([w.perturbed for w in windows]),
        log_names=tuple(name for w in windows for name in w.log_names),
    )


def load_windows(cache_dir: Path, config: LatentActionConfig, split: str | None = None) -> LamWindows:
    """Windows of every log in a dataset cache (``dataset.json``), optionally one split only."""
    cache_dir = Path(cache_dir)
    logs = log_entries(cache_dir, split)
    windows = []
    for number, entry in enumerate(logs):
        log = LogSamples.load(cache_dir / entry["name"])
        if log.frames.shape[1] < config.frame_height or log.frames.shape[2] < config.frame_width:
            raise FrameSizeError(
                f"{entry['name']}: frames are {log.frames.shape[2]}x{log.frames.shape[1]}, smaller than the model's "
                f"{config.frame_width}x{config.frame_height}"
            )
        windows.append(windows_from_log(log, config, number))
    return concatenate(windows)


class LamDataset(Dataset):
    """Torch view of windows: frames as float tensors in [0, 1], (history + 2, 3, h, w)."""

    def __init__(self, windows: LamWindows) -> None:
        self.windows = windows

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> dict:
        window = self.windows
        frames = torch.from_numpy(window.frames[window.indices[index]]).permute(0, 3, 1, 2).float() / 255.0
        return {
            "frames": frames,
            "ego_motion": torch.from_numpy(window.ego_motion[index]),
            "ego_state": torch.from_numpy(window.ego_state[index]),
            "maneuver": int(window.maneuver[index]),
        }


def device_batches(dataset: Dataset, batch_size: int, device: torch.device | str) -> Iterator[dict]:
    """The batches of ``dataset`` in order, their tensors moved to ``device``."""
    for batch in DataLoader(dataset, batch_size=batch_size):
        yield {key: value.to(device) if torch.is_tensor(value) else value for key, value in batch.items()}
