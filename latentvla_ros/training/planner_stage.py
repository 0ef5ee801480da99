"""Training the fusion planner (or its no-fusion ablation): ``latentvla train planner``.

The fusion reads the *student's* latent actions during training, as it does on the car
(the student is frozen and run once over the samples first); the teacher's outputs have
the same shapes and meaning, so the trained planner also runs undistilled. Loss: L1 on
the 8 future poses plus BCE on the BEV raster where a log has one. Held-out ADE/FDE go
to ``metrics.jsonl``; checkpoints resume; ``torchrun``-ready through the shared loop.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from latentvla_ros.core.validation import check_loss_weight
from latentvla_ros.evaluation.planner_evaluation import displacement_errors, predict_planner
from latentvla_ros.evaluation.student_evaluation import predict_student
from latentvla_ros.models.checkpoint import CheckpointError, resume_point
from latentvla_ros.models.planner import FusionPlanner, PlannerConfig, check_position_loss, planner_loss
from latentvla_ros.models.planner_features import PlannerSamples, load_planner_samples
from latentvla_ros.models.student import LatentActionStudent
from latentvla_ros.training.loop import (
    MetricsLog,
    RowNumbers,
    StageSchedule,
    setup_runtime,
    teardown_runtime,
    train_stage,
    write_training_config,
)

MODEL_VERSION = "1.0"
CHECKPOINT = "planner_checkpoint"


@dataclass(frozen=True)
class PlannerTrainingConfig:
    # 3,000 -> 4,000 on 252 minutes: 1.220 -> 1.194 at 4 s over 3 seeds; 8,000 with 4 x 4 BEV cells
    # (~0.16 s a step on one thread, so the same time): README "Four BEV cells a side"
    steps: int = 8000
    batch_size: int = 32
    learning_rate: float = 5e-4
    bev_weight: float = 0.5  # 0.1 -> 0.5 with 3,000 steps: 1.287 -> 1.231 at 4 s (README, "the BEV loss's weight")
    position_loss: str = "l1"  # or "euclidean": the distance ADE averages
    # The share of training samples whose fusion is dropped (their BEV tokens the image's
    # alone), so the image path learns to plan by itself too; 0: off. Fusion planner only.
    # 0 -> 0.5 at 8,000 steps: seed 0's fresh ADE@4s 1.169 -> 1.119 (README "Four BEV cells a side")
    latent_dropout: float = 0.5
    evaluate_every: int = 500
    seed: int = 0

    def __post_init__(self) -> None:
        check_position_loss(self.position_loss)  # refused before any data is read
        check_loss_weight("bev_weight", self.bev_weight)
        if not 0.0 <= self.latent_dropout < 1.0:  # NaN fails both comparisons
            raise ValueError(f"latent_dropout must be in [0, 1), got {self.latent_dropout}")


def planner_name(use_fusion: bool) -> str:
    return f"planner_v{MODEL_VERSION}" if use_fusion else f"planner_nofusion_v{MODEL_VERSION}"


def student_latents(student: LatentActionStudent | None, samples: PlannerSamples) -> dict | None:
    """The frozen student's outputs for every sample (None without a student), each from the
    frames at the student's own input size (``load_planner_samples(student_size=...)``)."""
    if student is None:
        return None
    if samples.student_images.shape[1:3] != student.config.image_size:
        raise ValueError(
            f"samples hold frames of {samples.student_images.shape[1:3]}, the student reads {student.config.image_size}"
        )
    if samples.history.shape[1] != student.config.history_frames:
        raise ValueError(
            f"samples hold {samples.history.shape[1]} frames each, the student reads {student.config.history_frames}"
        )
    return predict_student(student, samples.student_images, samples.history, samples.ego_status, samples.commands)


def collate_planner(samples: PlannerSamples, latents: dict | None):
    def collate(rows: list[int]) -> dict:
        rows = np.asarray(rows)
        batch = {
            "frames": torch.from_numpy(samples.images[samples.frame[rows]]),
            "ego_status": torch.from_numpy(samples.ego_status[rows]),
            "commands": torch.from_numpy(samples.commands[rows]),
            "trajectories": torch.from_numpy(samples.trajectories[rows]),
            "bev": torch.from_numpy(samples.bev[rows]),
            "has_bev": torch.from_numpy(samples.has_bev[rows]),
        }
        if latents is not None:
            for name, values in latents.items():
                batch[f"latent_{name}"] = torch.from_numpy(np.ascontiguousarray(values[rows], dtype=np.float32))
        return batch

    return collate


def latent_from_batch(batch: dict):
    from latentvla_ros.models.planner import LatentInput

    if "latent_probabilities" not in batch:
        return None
    return LatentInput(
        batch["latent_probabilities"], batch["latent_action_embeddings"], batch["latent_visual_embedding"]
    )


def train_planner(
    data: Path,
    out_dir: Path,
    student_path: Path | None,
    config: PlannerConfig | None = None,
    training: PlannerTrainingConfig | None = None,
    resume: bool = False,
) -> dict:
    """Train on the cache's train split, watch its val split; writes ``planner[_nofusion]_v1.0``."""
    config = config or PlannerConfig()
    training = training or PlannerTrainingConfig()
    if not config.use_fusion:  # the twin has no fusion to drop: record what it trained with
        training = replace(training, latent_dropout=0.0)
    out_dir = Path(out_dir)
    runtime = setup_runtime()
    try:
        torch.manual_seed(training.seed)
        student = None
        student_description: dict = {}
        if config.use_fusion:
            if student_path is None:
                raise CheckpointError("the fusion planner trains on the student's latent actions: pass --student")
            student, student_description = LatentActionStudent.load(student_path)
            sizes = student.config  # the fusion reads what the student writes
            config = replace(
                config,
                horizon=sizes.horizon,
                codebook_size=sizes.codebook_size,
                latent_embedding_dim=sizes.embedding_dim,
            )
        planner = FusionPlanner(config)
        checkpoint = out_dir / CHECKPOINT
        start_step, optimizer_state = resume_point(checkpoint, planner, resume, out_dir, config.to_dict())
        reads = (
            {}
            if student is None
            else {  # the frames the student reads: its size, its history
                "student_size": student.config.image_size,
                "student_history_frames": student.config.history_frames,
            }
        )
        samples = load_planner_samples(data, config, "train", **reads)
        validation = load_planner_samples(data, config, "val", **reads)
        latents = student_latents(student, samples)
        validation_latents = student_latents(student, validation)
        write_training_config(out_dir, config.to_dict(), training)
        planner.to(runtime.device)

        def loss(model, batch):
            keep = None
            if training.latent_dropout > 0.0:
                keep = torch.rand(len(batch["frames"])) >= training.latent_dropout
            output = model(batch["frames"], batch["ego_status"], batch["commands"], latent_from_batch(batch), keep)
            return planner_loss(
                output,
                batch["trajectories"],
                batch["bev"],
                batch["has_bev"],
                training.bev_weight,
                training.position_loss,
            )

        def evaluate() -> dict:
            predicted = predict_planner(planner, validation, validation_latents)
            errors = displacement_errors(predicted, validation.trajectories, config.interval_s)
            return {"val_ade_4s": round(errors["ade_4s"], 4), "val_fde_4s": round(errors["fde_4s"], 4)}

        def save_checkpoint(stem: Path, extra: dict) -> None:
            planner.save(stem, MODEL_VERSION, extra)

        schedule = StageSchedule.for_training(training, cosine_decay=True)
        train_stage(
            "planner" if config.use_fusion else "planner_nofusion", planner, list(planner.parameters()), loss,
            RowNumbers(len(samples)), schedule, runtime, checkpoint, save_checkpoint, evaluate,
            MetricsLog(out_dir / "metrics.jsonl", runtime.is_main), start_step, optimizer_state, training.seed,
            collate=collate_planner(samples, latents),
        )  # fmt: skip
        report = {}
        if runtime.is_main:
            predicted = predict_planner(planner, validation, validation_latents)
            report = displacement_errors(predicted, validation.trajectories, config.interval_s)
            extra = {
                "metrics_val": report,
                "training": asdict(training),
                "seed": training.seed,
                # The best constant output (a baseline in `latentvla eval planner`).
                "mean_trajectory": samples.trajectories.mean(axis=0).round(4).tolist(),
            }
            if student is not None:
                extra["student"] = {"version": student_description["version"], "sha256": student_description["sha256"]}
            planner.save(out_dir / planner_name(config.use_fusion), MODEL_VERSION, extra)
            (out_dir / "planner_eval.json").write_text(json.dumps(report, indent=2))
    finally:
        teardown_runtime()
    return report
