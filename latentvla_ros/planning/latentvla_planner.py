"""The LatentVLA planner behind the one planner interface.

``LatentVLAPlanner`` wraps the fusion planner and where its latent actions come from: the
student (distilled, the default on the car), the teacher (undistilled), or nothing (the
no-fusion ablation). ``plan`` takes latent actions computed elsewhere (the planner node
receives them as a message); ``compute_trajectory`` computes them itself from the
input's frame history (replay, closed loop).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from latentvla_ros.core.driving_command import DrivingCommand
from latentvla_ros.core.ego_state import EgoState
from latentvla_ros.core.latent_actions import LatentActions, LatentSource
from latentvla_ros.core.trajectory import Trajectory
from latentvla_ros.core.validation import InputError
from latentvla_ros.models.planner import FusionPlanner, LatentInput
from latentvla_ros.models.student import LatentActionStudent
from latentvla_ros.models.student_features import resize_frames
from latentvla_ros.planning.interface import Planner, PlannerInput

LATENT_STEP_S = 0.3  # one latent step: 3 camera frames at 10 Hz (the LAM's step)


def latent_actions_from_output(output, source: LatentSource, version: str, stamp_ns: int) -> LatentActions:
    """The first row of a StudentOutput or TeacherOutput (same fields) as LatentActions."""
    return LatentActions(
        stamp_ns=stamp_ns,  # the camera frame's: consumers judge freshness by it
        source=source,
        tokens=output.tokens[0].numpy(),
        probabilities=output.probabilities[0].numpy(),
        step_period_s=LATENT_STEP_S,
        model_version=version,
        embedding=output.action_embeddings[0].numpy(),
        visual_embedding=output.visual_embedding[0].numpy(),
    )


@dataclass(frozen=True)
class StudentActions:
    """Runs the student on frames one latent step apart (oldest first)."""

    student: LatentActionStudent
    version: str

    @property
    def history_frames(self) -> int:
        return self.student.config.history_frames

    def __call__(self, frames: np.ndarray, ego: EgoState, command: DrivingCommand, stamp_ns: int) -> LatentActions:
        config = self.student.config
        frames = resize_frames(np.asarray(frames), config.image_width, config.image_height)
        with torch.inference_mode():
            output = self.student(
                torch.from_numpy(frames[None]),
                torch.from_numpy(ego.status_vector()[None]),
                torch.tensor([int(command)]),
            )
        return latent_actions_from_output(output, LatentSource.STUDENT, self.version, stamp_ns)


@dataclass(frozen=True)
class TeacherActions:
    """Runs the teacher VLM on frames one latent step apart (oldest first)."""

    teacher: object  # LatentActionTeacher (transformers imported only when a teacher is used)

    @property
    def history_frames(self) -> int:
        return self.teacher.config.history_frames

    def __call__(self, frames: np.ndarray, ego: EgoState, command: DrivingCommand, stamp_ns: int) -> LatentActions:
        config = self.teacher.config
        frames = resize_frames(np.asarray(frames), config.image_width, config.image_height)
        output = self.teacher.predict(frames[None], np.array([int(command)]), np.array([ego.speed_mps]))
        return latent_actions_from_output(output, LatentSource.TEACHER, self.teacher.version, stamp_ns)


def latent_input(actions: LatentActions) -> LatentInput:
    """The fusion's keys and values from a LatentActions (which must carry both embeddings)."""
    if actions.embedding is None or actions.visual_embedding is None:
        raise InputError("LatentActions.embedding", "per-step and visual embeddings for the fusion", "none")
    return LatentInput(
        torch.from_numpy(actions.probabilities[None]),
        torch.from_numpy(actions.embedding[None]),
        torch.from_numpy(actions.visual_embedding[None]),
    )


class LatentVLAPlanner(Planner):
    """The fusion planner with a latent-action source; ``source=None`` for the no-fusion model."""

    def __init__(self, planner: FusionPlanner, source=None, version: str = "", name: str | None = None) -> None:
        """``source``: computes latent actions in :meth:`compute_trajectory`; None where they come
        from elsewhere (:meth:`plan`, e.g. the planner node's input topic) or are not used."""
        self.planner = planner.eval()
        self.source = source
        self.version = version
        self.name = name or ("latentvla" if planner.config.use_fusion else "no_fusion")
        self.last_actions: LatentActions | None = None

    def plan(
        self, frame: np.ndarray, ego: EgoState, command: DrivingCommand, actions: LatentActions | None
    ) -> Trajectory:
        """Poses for the current ``frame`` (H, W, 3) uint8 given latent actions for it."""
        config = self.planner.config
        image = resize_frames(np.asarray(frame)[None], config.image_width, config.image_height)
        latent = None
        if config.use_fusion:
            if actions is None:
                raise InputError("latent actions", "the student's or teacher's actions for this frame", "none")
            if actions.horizon != config.horizon or actions.codebook_size != config.codebook_size:
                raise InputError(
                    "LatentActions", f"{config.horizon} steps x {config.codebook_size} codes",
                    f"{actions.horizon} x {actions.codebook_size}",
                )  # fmt: skip
            latent = latent_input(actions)
        with torch.inference_mode():
            output = self.planner(
                torch.from_numpy(image),
                torch.from_numpy(ego.status_vector()[None]),
                torch.tensor([int(command)]),
                latent,
            )
        return Trajectory(output.poses[0].double().numpy(), config.interval_s)

    def compute_trajectory(self, planner_input: PlannerInput) -> Trajectory:
        frames = planner_input.camera_frames
        if frames is None or len(frames) == 0:
            raise InputError("PlannerInput.camera_frames", "the camera frames (oldest first)", "none")
        actions = None
        if self.planner.config.use_fusion and self.source is None:
            raise ValueError("this fusion planner has no latent-action source: use plan() with actions")
        if self.source is not None:
            history = self.source.history_frames
            chosen = np.asarray(frames)[-history:]
            if len(chosen) < history:  # the drive just started: repeat its first frame
                chosen = np.concatenate([np.repeat(chosen[:1], history - len(chosen), axis=0), chosen])
            actions = self.source(
                chosen, planner_input.ego_state, planner_input.driving_command, planner_input.stamp_ns
            )
        self.last_actions = actions
        return self.plan(frames[-1], planner_input.ego_state, planner_input.driving_command, actions)


PLANNER_NAMES = ("latentvla", "latentvla_teacher", "no_fusion", "constant_velocity")


def load_planner(name: str, models_dir) -> Planner:
    """A planner of :data:`PLANNER_NAMES` from a models directory (the shipped one by default)."""
    from pathlib import Path

    from latentvla_ros.environment import SHIPPED_NO_FUSION_PLANNER, SHIPPED_PLANNER, SHIPPED_STUDENT, SHIPPED_TEACHER
    from latentvla_ros.planning.interface import ConstantVelocityPlanner

    models_dir = Path(models_dir)
    if name == "constant_velocity":
        return ConstantVelocityPlanner()
    if name == "no_fusion":
        planner, description = FusionPlanner.load(models_dir / SHIPPED_NO_FUSION_PLANNER)
        return LatentVLAPlanner(planner, None, description["version"], name)
    if name == "latentvla":
        planner, description = FusionPlanner.load(models_dir / SHIPPED_PLANNER)
        student, student_description = LatentActionStudent.load(models_dir / SHIPPED_STUDENT)
        return LatentVLAPlanner(
            planner, StudentActions(student, student_description["version"]), description["version"], name
        )
    if name == "latentvla_teacher":
        from latentvla_ros.models.teacher.teacher_model import LatentActionTeacher

        planner, description = FusionPlanner.load(models_dir / SHIPPED_PLANNER)
        teacher = LatentActionTeacher.from_pretrained(models_dir / SHIPPED_TEACHER)
        return LatentVLAPlanner(planner, TeacherActions(teacher), description["version"], name)
    raise ValueError(f"unknown planner '{name}': expected one of {', '.join(PLANNER_NAMES)}")
