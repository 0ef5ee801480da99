"""How well does the teacher predict the next 12 latent ego actions? Beside three baselines.

On held-out logs, per future step k = 1..12:

- ``teacher``: top-1 accuracy of the greedy, constrained decoding (what the node
  publishes) and the negative log-likelihood of the true tokens under its distributions
  (teacher-forced);
- ``majority``: always the most frequent token of the *training* targets;
- ``repeat_current``: the last observed action (the step that ended at t) repeated 12
  times — actions persist, so this is the strong trivial baseline (where the log has no
  such step, the majority token);
- ``blank_image``: the same teacher given a uniform grey frame: does it use the camera?
"""

from __future__ import annotations

import numpy as np
import torch

from latentvla_ros.models.teacher.teacher_features import TeacherSamples
from latentvla_ros.models.teacher.teacher_model import LatentActionTeacher


def majority_token(targets: np.ndarray) -> int:
    return int(np.bincount(np.asarray(targets).ravel()).argmax())


@torch.no_grad()
def teacher_predictions(
    teacher: LatentActionTeacher, samples: TeacherSamples, batch_size: int = 32, blank: bool = False
) -> tuple[np.ndarray, float]:
    """Greedy tokens (N, T) and the mean teacher-forced NLL (nats per step) of the targets."""
    device = next(teacher.model.parameters()).device
    horizon = samples.targets.shape[1]
    tokens, nll_sum = [], 0.0
    for start in range(0, len(samples), batch_size):
        rows = slice(start, start + batch_size)
        frames = samples.frames[rows]
        if blank:
            frames = np.full_like(frames, 128)
        commands, speeds, targets = samples.commands[rows], samples.speeds_mps[rows], samples.targets[rows]
        tokens.append(teacher.predict(frames, commands, speeds).tokens.numpy())
        batch = {key: value.to(device) for key, value in teacher.encode(frames, commands, speeds, targets).items()}
        batch.pop("labels")
        logits = teacher.action_logits(teacher.model(**batch).logits, horizon).float()
        log_probabilities = torch.log_softmax(logits, dim=-1)
        chosen = log_probabilities.gather(-1, torch.as_tensor(targets, device=device)[..., None])
        nll_sum -= float(chosen.sum())
    return np.concatenate(tokens), nll_sum / max(samples.targets.size, 1)


def step_accuracy(predicted: np.ndarray, targets: np.ndarray) -> list[float]:
    """Top-1 accuracy per future step, (T,)."""
    return [float(value) for value in (np.asarray(predicted) == np.asarray(targets)).mean(axis=0)]


def evaluate_teacher(
    teacher: LatentActionTeacher,
    samples: TeacherSamples,
    train_majority_token: int,
    limit: int | None = None,
    baselines: bool = True,
) -> dict:
    """The report (JSON-ready): per-step and mean top-1 accuracy of the teacher and the
    baselines, the teacher's NLL, and how many held-out frames they were measured on."""
    if limit is not None and limit < len(samples):
        samples = samples.subset(np.linspace(0, len(samples) - 1, limit).astype(int))
    targets = samples.targets
    predicted, nll = teacher_predictions(teacher, samples)
    report = {"frames": len(samples), "teacher_nll": nll, "teacher_top1_per_step": step_accuracy(predicted, targets)}
    report["teacher_top1"] = float(np.mean(report["teacher_top1_per_step"]))
    if not baselines:
        return report
    majority = np.full_like(targets, train_majority_token)
    current = np.where(samples.current_tokens >= 0, samples.current_tokens, train_majority_token)
    repeat = np.repeat(current[:, None], targets.shape[1], axis=1)
    blank_predicted, blank_nll = teacher_predictions(teacher, samples, blank=True)
    for name, prediction in (("majority", majority), ("repeat_current", repeat), ("blank_image", blank_predicted)):
        report[f"{name}_top1_per_step"] = step_accuracy(prediction, targets)
        report[f"{name}_top1"] = float(np.mean(report[f"{name}_top1_per_step"]))
    report["blank_image_nll"] = blank_nll
    report["majority_token"] = train_majority_token
    report["frames_with_observed_current"] = int((samples.current_tokens >= 0).sum())
    report["gain_over_best_trivial"] = report["teacher_top1"] - max(
        report["majority_top1"], report["repeat_current_top1"]
    )
    report["camera_contribution"] = report["teacher_top1"] - report["blank_image_top1"]
    return report
