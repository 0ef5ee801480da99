"""How closely the student follows the teacher, on held-out logs: ``latentvla eval student``.

Per future step: KL(teacher || student) in nats and top-1 agreement (the student's most
likely code is the teacher's), beside the strongest trivial student — the per-step
*marginal* of the teacher's answers on the training logs (the best constant
distribution for KL; its mode the best constant code for agreement) — and the cosine
of the fusion embeddings the planner reads.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch

from latentvla_ros.evaluation.block_bootstrap import BLOCK_FRAMES, block_bootstrap_interval, paired_difference
from latentvla_ros.models.student import LatentActionStudent
from latentvla_ros.models.student_features import StudentSamples


def predict_student(
    student: LatentActionStudent,
    images: np.ndarray,
    history: np.ndarray,
    ego_status: np.ndarray,
    commands: np.ndarray,
    batch_size: int = 128,
) -> dict:
    """The student's outputs (numpy) for samples whose frames are ``images[history]`` (N, history)."""
    student.eval()
    parts: dict[str, list] = {"probabilities": [], "action_embeddings": [], "visual_embedding": []}
    with torch.inference_mode():
        for start in range(0, len(history), batch_size):
            rows = slice(start, start + batch_size)
            output = student(
                torch.from_numpy(images[history[rows]]),
                torch.from_numpy(np.asarray(ego_status[rows], dtype=np.float32)),
                torch.from_numpy(np.asarray(commands[rows])),
            )
            for name in parts:
                parts[name].append(getattr(output, name).float().numpy())
    return {name: np.concatenate(values) for name, values in parts.items()}


def teacher_marginal(probabilities: np.ndarray) -> np.ndarray:
    """(T, K) the mean teacher distribution per step: the best constant student."""
    return probabilities.mean(axis=0)


def _kl(teacher: np.ndarray, student: np.ndarray) -> np.ndarray:
    """(N, T) KL(teacher || student) in nats."""
    teacher = np.clip(teacher, 1e-8, 1.0)
    student = np.clip(student, 1e-8, 1.0)
    return (teacher * (np.log(teacher) - np.log(student))).sum(axis=-1)


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = a.reshape(-1, a.shape[-1]).astype(np.float64)
    b = b.reshape(-1, b.shape[-1]).astype(np.float64)
    return float(np.mean((a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1) + 1e-9)))


# Bands of the teacher's top probability: where it hesitates, top-1 agreement is a coin
# toss between near-equal codes; where it is sure, disagreement is the student's error.
CONFIDENCE_BANDS = (0.0, 0.3, 0.5, 0.7, 0.9, 1.0)


def agreement_by_teacher_confidence(teacher: np.ndarray, agreement: np.ndarray) -> list[dict]:
    """Per band of the teacher's top probability (N, T): its share of (frame, step) pairs and
    the student's top-1 agreement there (None for an empty band). Bands are closed below; a
    top probability of 1.0 falls in the last one."""
    band_of = np.digitize(teacher.max(axis=-1), CONFIDENCE_BANDS[1:-1])  # each pair in exactly one band
    bands = []
    for number, (low, high) in enumerate(itertools.pairwise(CONFIDENCE_BANDS)):
        inside = band_of == number
        bands.append(
            {
                "teacher_top_probability": [low, high],
                "fraction": round(float(inside.mean()), 4),
                "agreement": round(float(agreement[inside].mean()), 4) if inside.any() else None,
            }
        )
    return bands


def frame_agreement(student: LatentActionStudent, samples: StudentSamples) -> np.ndarray:
    """(N,) per frame, the share of the 12 steps where the student's top code is the teacher's."""
    predicted = predict_student(student, samples.images, samples.history, samples.ego_status, samples.commands)
    return _step_agreement(predicted["probabilities"], samples.probabilities).mean(axis=1)


def _step_agreement(student: np.ndarray, teacher: np.ndarray) -> np.ndarray:
    """(N, T) whether the student's most likely code is the teacher's, from (N, T, K) each."""
    return student.argmax(-1) == teacher.argmax(-1)


def evaluate_student(
    student: LatentActionStudent,
    samples: StudentSamples,
    marginal: np.ndarray,
    against: np.ndarray | None = None,
) -> dict:
    """KL and top-1 agreement of the student and of the constant marginal ``marginal`` (T, K);
    with ``against`` (N,), another student's ``frame_agreement`` on these frames, the paired
    difference too."""
    predicted = predict_student(student, samples.images, samples.history, samples.ego_status, samples.commands)
    teacher_tokens = samples.probabilities.argmax(-1)
    agreement = _step_agreement(predicted["probabilities"], samples.probabilities)
    constant = np.broadcast_to(marginal, samples.probabilities.shape)
    constant_agreement = marginal.argmax(-1)[None, :] == teacher_tokens
    report = {
        "frames": len(samples),
        "student_kl": float(_kl(samples.probabilities, predicted["probabilities"]).mean()),
        "student_top1_agreement": float(agreement.mean()),
        "student_top1_agreement_per_step": agreement.mean(axis=0).round(4).tolist(),
        # A few minutes of drives: how far the figure could move on other drives like them.
        "student_top1_agreement_interval_95": block_bootstrap_interval(agreement.mean(axis=1), samples.log),
        "interval_block_frames": BLOCK_FRAMES,
        "student_top1_agreement_by_teacher_confidence": agreement_by_teacher_confidence(
            samples.probabilities, agreement
        ),
        "constant_kl": float(_kl(samples.probabilities, constant).mean()),
        "constant_top1_agreement": float(constant_agreement.mean()),
        "action_embedding_cosine": _cosine(predicted["action_embeddings"], samples.action_embeddings),
        "visual_embedding_cosine": _cosine(predicted["visual_embedding"], samples.visual_embedding),
    }
    report["agreement_gain_over_constant"] = report["student_top1_agreement"] - report["constant_top1_agreement"]
    if against is not None:
        report["agreement_minus_against"] = paired_difference(agreement.mean(axis=1), against, samples.log)
    return report
