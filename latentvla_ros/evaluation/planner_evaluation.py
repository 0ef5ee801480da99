"""Open-loop planner metrics on held-out logs: ``latentvla eval planner``.

ADE / FDE (metres) at 1, 2 and 4 s for every planner in one table: constant velocity
(NAVSIM's baseline), the best constant trajectory (the training mean), the LatentVLA
planner fed by the student (distilled) and by the teacher (undistilled), the same
planner fed *shuffled* latent actions (what the latents themselves add), and the
no-fusion ablation. Planners trained with several seeds report mean and std.
"""

from __future__ import annotations

import numpy as np
import torch

from latentvla_ros.core.trajectory import Trajectory
from latentvla_ros.models.planner import FusionPlanner, latent_input_from_arrays
from latentvla_ros.models.planner_features import PlannerSamples

HORIZONS_S = (1.0, 2.0, 4.0)


def predict_planner(
    planner: FusionPlanner, samples: PlannerSamples, latents: dict | None, batch_size: int = 128
) -> np.ndarray:
    """(N, 8, 3) poses for every sample; ``latents`` per sample (student or teacher), or None."""
    planner.eval()
    parts = []
    with torch.inference_mode():
        for start in range(0, len(samples), batch_size):
            rows = slice(start, start + batch_size)
            latent = None
            if planner.config.use_fusion:
                latent = latent_input_from_arrays(
                    latents["probabilities"][rows],
                    latents["action_embeddings"][rows],
                    latents["visual_embedding"][rows],
                )
            output = planner(
                torch.from_numpy(samples.images[samples.frame[rows]]),
                torch.from_numpy(samples.ego_status[rows]),
                torch.from_numpy(samples.commands[rows]),
                latent,
            )
            parts.append(output.poses.numpy())
    return np.concatenate(parts)


def constant_velocity_poses(samples: PlannerSamples, num_poses: int = 8, interval_s: float = 0.5) -> np.ndarray:
    """(N, 8, 3) NAVSIM's constant-velocity baseline from the live ego status."""
    return np.stack(
        [
            Trajectory.constant_velocity(
                float(np.hypot(s[0], s[1])), float(s[4]), num_poses, interval_s
            ).poses_ego_frame
            for s in samples.ego_status
        ]
    )


def displacement_errors(predicted: np.ndarray, target: np.ndarray, interval_s: float = 0.5) -> dict:
    """ADE and FDE (m) at each horizon of :data:`HORIZONS_S` over (N, P, >=2) poses."""
    distance = np.linalg.norm(predicted[..., :2] - target[..., :2], axis=-1)
    report = {}
    for horizon in HORIZONS_S:
        poses = round(horizon / interval_s)
        if poses > distance.shape[1]:
            continue
        report[f"ade_{horizon:g}s"] = float(distance[:, :poses].mean())
        report[f"fde_{horizon:g}s"] = float(distance[:, poses - 1].mean())
    return report


def shuffled(latents: dict, seed: int = 0) -> dict:
    """The same latent actions given to other samples: the control for what they carry."""
    order = np.random.default_rng(seed).permutation(len(latents["probabilities"]))
    return {name: values[order] for name, values in latents.items()}


def aggregate(runs: list[dict]) -> dict:
    """Mean and std (population, over seeds) of every metric; the per-seed values kept."""
    keys = runs[0].keys()
    summary = {key: float(np.mean([run[key] for run in runs])) for key in keys}
    summary.update({f"{key}_std": float(np.std([run[key] for run in runs])) for key in keys})
    summary["seeds"] = len(runs)
    summary["per_seed"] = runs
    return summary


def compare_planners(samples: PlannerSamples, student, fusion_paths: list, no_fusion_paths: list) -> dict:
    """Every planner's ADE/FDE on ``samples``, one row each (seeds aggregated)."""
    from latentvla_ros.evaluation.student_evaluation import predict_student

    def errors(poses: np.ndarray) -> dict:
        return displacement_errors(poses, samples.trajectories)

    rows = {"constant_velocity": errors(constant_velocity_poses(samples))}
    fusion = [FusionPlanner.load(path) for path in fusion_paths]
    no_fusion = [FusionPlanner.load(path)[0] for path in no_fusion_paths]
    mean_trajectory = next((d["mean_trajectory"] for _, d in fusion if "mean_trajectory" in d), None)
    if mean_trajectory is not None:
        rows["constant_mean_trajectory"] = errors(
            np.broadcast_to(np.asarray(mean_trajectory), samples.trajectories.shape)
        )
    if fusion:
        latents = predict_student(student, samples.images, samples.history, samples.ego_status, samples.commands)
        rows["latentvla_student"] = aggregate([errors(predict_planner(p, samples, latents)) for p, _ in fusion])
        if samples.teacher is not None:
            teacher = {name: samples.teacher[name] for name in latents}
            rows["latentvla_teacher"] = aggregate([errors(predict_planner(p, samples, teacher)) for p, _ in fusion])
        mixed = shuffled(latents)
        rows["latentvla_shuffled_latents"] = aggregate([errors(predict_planner(p, samples, mixed)) for p, _ in fusion])
    if no_fusion:
        rows["no_fusion"] = aggregate([errors(predict_planner(p, samples, None)) for p in no_fusion])
    return rows
