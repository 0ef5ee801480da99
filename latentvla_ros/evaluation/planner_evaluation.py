"""Open-loop planner metrics on held-out logs: ``latentvla eval planner``.

ADE / FDE (metres) at 1, 2 and 4 s for every planner in one table: constant velocity
(NAVSIM's baseline), the best constant trajectory (the training mean), the LatentVLA
planner fed by the student (distilled) and by the teacher (undistilled), the same
planner fed *shuffled* latent actions (what the latents themselves add), and the
no-fusion ablation. Planners trained with several seeds report mean and std.

A few minutes of held-out drives pin ADE@4s down only so far: every row carries a
block-bootstrap interval of it, and the comparisons the issue asks for (fusion vs its
ablation, the planner vs half of constant velocity, vs shuffled latents) are paired on the
same samples, which is far more precise than comparing two intervals.
"""

from __future__ import annotations

import numpy as np
import torch

from latentvla_ros.core.trajectory import Trajectory
from latentvla_ros.evaluation.block_bootstrap import block_bootstrap_interval, paired_difference
from latentvla_ros.models.planner import FusionPlanner, latent_input_from_arrays
from latentvla_ros.models.planner_features import PlannerSamples

HORIZONS_S = (1.0, 2.0, 4.0)
PAIRED_HORIZON_S = 4.0  # the yardstick: ADE at 4 s


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
    distance = pose_distances(predicted, target)
    report = {}
    for horizon in HORIZONS_S:
        poses = round(horizon / interval_s)
        if poses > distance.shape[1]:
            continue
        report[f"ade_{horizon:g}s"] = float(distance[:, :poses].mean())
        report[f"fde_{horizon:g}s"] = float(distance[:, poses - 1].mean())
    return report


def pose_distances(predicted: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(N, P) planar distance (m) between each predicted pose and its target."""
    return np.linalg.norm(predicted[..., :2] - target[..., :2], axis=-1)


def sample_ade(predicted: np.ndarray, target: np.ndarray, horizon_s: float = PAIRED_HORIZON_S, interval_s: float = 0.5):
    """(N,) each sample's ADE (m) over the poses up to ``horizon_s``: what the intervals resample."""
    poses = round(horizon_s / interval_s)
    return pose_distances(predicted[:, :poses], target[:, :poses]).mean(axis=1)


def paired_comparisons(ade: dict[str, np.ndarray], logs: np.ndarray) -> dict:
    """The comparisons behind the issue's claims, each a paired difference of per-sample ADE@4s
    (seed-averaged where a planner has seeds) with its block-bootstrap interval: below zero
    means the first planner is better. ``student_minus_half_constant_velocity`` below zero is
    "at most half of constant velocity's" (the mean of a - b/2 is the difference of means)."""
    pairs = {
        "student_minus_no_fusion": ("latentvla_student", "no_fusion", 1.0),
        "student_minus_half_constant_velocity": ("latentvla_student", "constant_velocity", 0.5),
        "student_minus_shuffled_latents": ("latentvla_student", "latentvla_shuffled_latents", 1.0),
        "teacher_minus_student": ("latentvla_teacher", "latentvla_student", 1.0),
    }
    return {
        name: paired_difference(ade[first], scale * ade[second], logs)
        for name, (first, second, scale) in pairs.items()
        if first in ade and second in ade
    }


def ade_by_log(ade: dict[str, np.ndarray], logs: np.ndarray, log_names: list[str]) -> dict:
    """Each log's sample count and every planner's ADE@4s on it (seed-averaged): where a
    planner wins or loses, which one mean over all logs hides. A name listed twice (one log
    in two splits) gets its position appended, so no log's figures overwrite another's."""
    by_log = {}
    for number, name in enumerate(log_names):
        rows = logs == number
        if log_names.count(name) > 1:
            name = f"{name} #{number}"
        if rows.any():
            by_log[name] = {
                "samples": int(rows.sum()),
                **{planner: float(a[rows].mean()) for planner, a in ade.items()},
            }
    return by_log


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


def compare_planners(
    samples: PlannerSamples, student, fusion_paths: list, no_fusion_paths: list, log_names: list[str]
) -> tuple[dict, dict, dict]:
    """Every planner's ADE/FDE on ``samples``, one row each (seeds aggregated), each row with
    ``ade_4s_interval_95``; the paired comparisons (:func:`paired_comparisons`); and ADE@4s per
    log (:func:`ade_by_log`; ``log_names`` in the order of ``samples.log``'s numbers)."""
    from latentvla_ros.evaluation.student_evaluation import predict_student

    rows, ade = {}, {}

    def score(name: str, runs: list[np.ndarray], trained: bool = True) -> None:
        """``runs``: one (N, 8, 3) prediction per trained seed (aggregated), or the one baseline's."""
        errors = [displacement_errors(poses, samples.trajectories) for poses in runs]
        rows[name] = aggregate(errors) if trained else errors[0]
        ade[name] = np.mean([sample_ade(poses, samples.trajectories) for poses in runs], axis=0)
        rows[name][f"ade_{PAIRED_HORIZON_S:g}s_interval_95"] = block_bootstrap_interval(ade[name], samples.log)

    fusion = [FusionPlanner.load(path) for path in fusion_paths]
    no_fusion = [FusionPlanner.load(path)[0] for path in no_fusion_paths]
    score("constant_velocity", [constant_velocity_poses(samples)], trained=False)
    mean_trajectory = next((d["mean_trajectory"] for _, d in fusion if "mean_trajectory" in d), None)
    if mean_trajectory is not None:
        score(
            "constant_mean_trajectory",
            [np.broadcast_to(np.asarray(mean_trajectory), samples.trajectories.shape)],
            trained=False,
        )
    if fusion:
        latents = predict_student(
            student, samples.student_images, samples.history, samples.ego_status, samples.commands
        )
        score("latentvla_student", [predict_planner(p, samples, latents) for p, _ in fusion])
        if samples.teacher is not None:
            teacher = {name: samples.teacher[name] for name in latents}
            score("latentvla_teacher", [predict_planner(p, samples, teacher) for p, _ in fusion])
        mixed = shuffled(latents)
        score("latentvla_shuffled_latents", [predict_planner(p, samples, mixed) for p, _ in fusion])
    if no_fusion:
        score("no_fusion", [predict_planner(p, samples, None) for p in no_fusion])
    return rows, paired_comparisons(ade, samples.log), ade_by_log(ade, samples.log, log_names)
