"""How good are the latent actions? Reconstruction, codebook use, disentanglement, glosses.

- next-frame reconstruction error vs the copy-last-frame baseline;
- codebook usage and perplexity of both codebooks;
- normalized mutual information (NMI, arithmetic normalization) between tokens and
  the ego maneuver (binned acceleration x yaw rate from odometry): high for ego
  tokens, low for environment tokens;
- a gloss per ego code (mean and spread of acceleration and yaw rate, a name);
- a PNG grid: for each ego code, example frame pairs and its mean ego motion.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from latentvla_ros.models.latent_action import LatentActionModel
from latentvla_ros.models.latent_action_features import LamDataset, LamWindows


def entropy(counts: np.ndarray) -> float:
    probabilities = counts[counts > 0] / counts.sum()
    return float(-(probabilities * np.log(probabilities)).sum())


def normalized_mutual_information(labels_a: np.ndarray, labels_b: np.ndarray) -> float:
    """NMI = I(A; B) / ((H(A) + H(B)) / 2), in [0, 1] (0 when either is constant)."""
    labels_a, labels_b = np.asarray(labels_a), np.asarray(labels_b)
    _, a = np.unique(labels_a, return_inverse=True)
    _, b = np.unique(labels_b, return_inverse=True)
    joint = np.zeros((a.max() + 1, b.max() + 1))
    np.add.at(joint, (a, b), 1.0)
    h_a, h_b = entropy(joint.sum(axis=1)), entropy(joint.sum(axis=0))
    if h_a == 0.0 or h_b == 0.0:
        return 0.0
    mutual = h_a + h_b - entropy(joint.ravel())
    return float(mutual / ((h_a + h_b) / 2.0))


def perplexity(tokens: np.ndarray, codebook_size: int) -> float:
    return float(np.exp(entropy(np.bincount(tokens, minlength=codebook_size).astype(float))))


@dataclass
class LamPredictions:
    ego_tokens: np.ndarray
    environment_tokens: np.ndarray
    reconstruction_mse: float
    copy_mse: float


@torch.no_grad()
def predict(
    model: LatentActionModel, windows: LamWindows, batch_size: int = 128, limit: int | None = None, stage: int = 2
) -> LamPredictions:
    """Tokens of every window and the reconstruction error (of ``stage``'s decoder) vs copying
    frame t. Ego tokens come from the stage-2 encoder either way."""
    model.eval()
    dataset = LamDataset(windows)
    if limit is not None and limit < len(dataset):
        dataset = torch.utils.data.Subset(dataset, np.linspace(0, len(windows) - 1, limit).astype(int).tolist())
    device = next(model.parameters()).device
    ego, environment, squared, copy_squared, count = [], [], 0.0, 0.0, 0
    for batch in DataLoader(dataset, batch_size=batch_size):
        batch = {key: value.to(device) if torch.is_tensor(value) else value for key, value in batch.items()}
        output = model(batch, stage=2)
        if stage == 1:
            output.prediction = model(batch, stage=1).prediction
        target, current = batch["frames"][:, -1], batch["frames"][:, -2]
        squared += float(((output.prediction - target) ** 2).sum())
        copy_squared += float(((current - target) ** 2).sum())
        count += target.numel()
        ego.append(output.ego.tokens.cpu().numpy())
        environment.append(output.environment.tokens.cpu().numpy())
    return LamPredictions(np.concatenate(ego), np.concatenate(environment), squared / count, copy_squared / count)


def code_glosses(
    ego_tokens: np.ndarray, acceleration: np.ndarray, yaw_rate: np.ndarray, codebook_size: int
) -> list[dict]:
    """Per ego code: how often, mean/std of acceleration and yaw rate, and a short name."""
    glosses = []
    for code in range(codebook_size):
        chosen = ego_tokens == code
        if not chosen.any():
            glosses.append({"code": code, "count": 0, "name": "unused"})
            continue
        accel, yaw = acceleration[chosen], yaw_rate[chosen]
        glosses.append(
            {
                "code": code,
                "count": int(chosen.sum()),
                "acceleration_mean_mps2": round(float(accel.mean()), 3),
                "acceleration_std_mps2": round(float(accel.std()), 3),
                "yaw_rate_mean_rps": round(float(yaw.mean()), 4),
                "yaw_rate_std_rps": round(float(yaw.std()), 4),
                "name": gloss_name(float(accel.mean()), float(yaw.mean())),
            }
        )
    return glosses


def gloss_name(acceleration_mps2: float, yaw_rate_rps: float) -> str:
    """A human-readable name from mean acceleration and yaw rate (left = positive yaw rate)."""
    if acceleration_mps2 < -2.0:
        longitudinal = "hard brake"
    elif acceleration_mps2 < -0.5:
        longitudinal = "brake"
    elif acceleration_mps2 > 0.7:
        longitudinal = "accelerate"
    elif acceleration_mps2 > 0.25:
        longitudinal = "speed up gently"
    else:
        longitudinal = "hold speed"
    magnitude = abs(yaw_rate_rps)
    if magnitude < 0.04:
        return longitudinal
    side = "left" if yaw_rate_rps > 0 else "right"
    lateral = f"gentle {side}" if magnitude < 0.15 else f"turn {side}" if magnitude < 0.35 else f"sharp {side}"
    return lateral if longitudinal == "hold speed" else f"{longitudinal}, {lateral}"


def evaluate_lam(
    model: LatentActionModel, windows: LamWindows, limit: int | None = None, stage: int = 2
) -> tuple[dict, LamPredictions]:
    """The report's numbers (JSON-ready) on ``windows`` (held-out logs)."""
    predictions = predict(model, windows, limit=limit, stage=stage)
    if limit is not None and limit < len(windows):
        chosen = np.linspace(0, len(windows) - 1, limit).astype(int)
    else:
        chosen = np.arange(len(windows))
    maneuver = windows.maneuver[chosen]
    size = model.config.codebook_size
    report = {
        "windows": len(chosen),
        "reconstruction_mse": predictions.reconstruction_mse,
        "copy_last_frame_mse": predictions.copy_mse,
        "recon_improvement_vs_copy": 1.0 - predictions.reconstruction_mse / max(predictions.copy_mse, 1e-12),
        "ego_codes_used": len(np.unique(predictions.ego_tokens)),
        "env_codes_used": len(np.unique(predictions.environment_tokens)),
        "ego_perplexity": perplexity(predictions.ego_tokens, size),
        "env_perplexity": perplexity(predictions.environment_tokens, size),
        "ego_nmi": normalized_mutual_information(predictions.ego_tokens, maneuver),
        "env_nmi": normalized_mutual_information(predictions.environment_tokens, maneuver),
    }
    report["nmi_ratio_ego_over_env"] = report["ego_nmi"] / max(report["env_nmi"], 1e-9)
    return report, predictions


def write_code_grid(
    path: Path, windows: LamWindows, ego_tokens: np.ndarray, glosses: list[dict], examples: int = 3
) -> Path:
    """PNG: a row per ego code with example (frame t, frame t+1) pairs and its gloss."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    codes = len(glosses)
    figure, axes = plt.subplots(codes, 2 * examples, figsize=(2.2 * 2 * examples, 1.25 * codes), squeeze=False)
    rng = np.random.default_rng(0)
    for code in range(codes):
        members = np.flatnonzero(ego_tokens == code)
        picks = rng.choice(members, size=min(examples, len(members)), replace=False) if len(members) else []
        for column in range(2 * examples):
            axis = axes[code, column]
            axis.axis("off")
            example = column // 2
            if example < len(picks):
                frame_index = windows.indices[picks[example]][-2 + column % 2]
                axis.imshow(windows.frames[frame_index])
        gloss = glosses[code]
        label = f"{code}: {gloss['name']}"
        if gloss["count"]:
            acceleration, yaw_rate = gloss["acceleration_mean_mps2"], gloss["yaw_rate_mean_rps"]
            label += f"\n a={acceleration:+.2f} m/s², ω={yaw_rate:+.3f} rad/s, n={gloss['count']}"
        axes[code, 0].set_title(label, fontsize=7, loc="left")
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return path


def write_report(out_dir: Path, report: dict, glosses: list[dict]) -> None:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "lam_eval.json").write_text(json.dumps({**report, "glosses": glosses}, indent=2))
