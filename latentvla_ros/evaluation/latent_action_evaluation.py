"""How good are the latent actions? Measured against the strongest trivial baselines.

Every number here is meant for held-out logs:

- **Reconstruction** of frame t+1 by each stage's decoder fed the inferred tokens,
  beside (a) copying frame t, (b) the same decoder fed the *best constant code*
  (searched over all 16), and (c) fed *shuffled* tokens. ``action_gain_vs_constant``
  = 1 - MSE(inferred) / MSE(best constant) is the part of the reconstruction the
  action itself carries; ``recon_improvement_vs_copy`` mostly measures the decoder.
- **Codebook use**: codes used and perplexity per codebook, and a *collapse* flag
  (perplexity below :data:`COLLAPSE_PERPLEXITY`): a one-code codebook fails the check.
- **Chance-corrected mutual information** (AMI, scikit-learn) of ego tokens with the
  ego maneuver (binned acceleration x yaw rate), of environment tokens with the other
  agents' motion (ground truth, where the log has it), and the cross terms. No ratios.
- **Linear probes**: ridge regression from one-hot ego tokens to yaw rate, speed change
  over the step and speed, fit on half of the logs and scored (R²) on the other half.
- **Glosses** per ego code from the same held-out windows (mean acceleration, yaw rate).
- **A training-free ego token** (``cost_volume_baseline``): the yaw that image matching
  through the calibrated warp finds, in 16 codes; its AMI with the maneuver beside the
  model's, both on the probe's score half.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import Ridge
from sklearn.metrics import adjusted_mutual_info_score, r2_score

from latentvla_ros.models.latent_action import LatentActionModel
from latentvla_ros.models.latent_action_features import UNKNOWN_AGENTS, LamDataset, LamWindows, device_batches

# A codebook whose held-out perplexity is below this carries (almost) one code: collapsed.
COLLAPSE_PERPLEXITY = 2.0


class CodebookCollapseError(RuntimeError):
    """A codebook that uses (almost) a single code; the message names it and its perplexity."""


def entropy(counts: np.ndarray) -> float:
    probabilities = counts[counts > 0] / counts.sum()
    return float(-(probabilities * np.log(probabilities)).sum())


def perplexity(tokens: np.ndarray, codebook_size: int) -> float:
    return float(np.exp(entropy(np.bincount(tokens, minlength=codebook_size).astype(float))))


def adjusted_mutual_information(tokens: np.ndarray, reference: np.ndarray) -> float | None:
    """AMI in [-, 1], 0 at chance; None with fewer than two samples or a ``reference`` of one
    value (nothing to explain; sklearn would call constant tokens a perfect match, 1.0).
    Tokens of one value against a varying reference carry nothing: 0."""
    if len(tokens) < 2 or len(np.unique(reference)) < 2:
        return None
    labels_a, labels_b = tokens, reference
    return float(adjusted_mutual_info_score(labels_a, labels_b))


@dataclass
class StageReconstruction:
    """Mean squared errors of one stage's decoder fed different codes."""

    inferred: float
    shuffled: float
    per_constant: np.ndarray  # (K,) fed code k everywhere

    @property
    def best_constant(self) -> float:
        return float(self.per_constant.min())

    @property
    def best_constant_code(self) -> int:
        return int(self.per_constant.argmin())

    def report(self, copy_mse: float) -> dict:
        def gain(ours: float, reference: float) -> float | None:
            # A reference with no error (frames that never change) leaves nothing to gain: n/a.
            return 1.0 - ours / reference if reference > 0.0 else None

        return {
            "reconstruction_mse": self.inferred,
            "best_constant_mse": self.best_constant,
            "best_constant_code": self.best_constant_code,
            "shuffled_mse": self.shuffled,
            "action_gain_vs_constant": gain(self.inferred, self.best_constant),
            "shuffled_gain_vs_constant": gain(self.shuffled, self.best_constant),
            "recon_improvement_vs_copy": gain(self.inferred, copy_mse),
        }


@dataclass
class LamPredictions:
    ego_tokens: np.ndarray
    environment_tokens: np.ndarray
    reconstruction_mse: float
    copy_mse: float
    stages: dict[int, StageReconstruction] | None = None


def _stage_predictions(
    model: LatentActionModel, batch: dict, stage: int, codes: torch.Tensor, environment: torch.Tensor
) -> torch.Tensor:
    """Frame t+1 from ``stage``'s decoder fed ``codes`` (B, D) as that stage's action; stage 2
    is also fed the (inferred) environment action ``environment`` (B, D)."""
    current = batch["frames"][:, -2]
    if stage == 1:
        return model.stage1_predict(current, codes, batch)
    return model.stage2_predict(current, environment, codes, batch)


def _squared_error(
    model: LatentActionModel, batch: dict, stage: int, codes: torch.Tensor, environment: torch.Tensor
) -> float:
    """Summed squared error of frame t+1 predicted by ``stage``'s decoder fed ``codes``."""
    prediction = _stage_predictions(model, batch, stage, codes, environment)
    return float(((prediction - batch["frames"][:, -1]) ** 2).sum())


@torch.no_grad()
def predict(
    model: LatentActionModel,
    windows: LamWindows,
    batch_size: int = 128,
    limit: int | None = None,
    stage: int = 2,
    baselines: bool = False,
) -> LamPredictions:
    """Tokens of every window and the reconstruction error of ``stage``'s decoder vs copying
    frame t. With ``baselines``, both stages' decoders are also fed every constant code
    and shuffled tokens (17 more decoder passes per stage)."""
    model.eval()
    dataset = LamDataset(windows)
    if limit is not None and limit < len(dataset):
        dataset = torch.utils.data.Subset(dataset, np.linspace(0, len(windows) - 1, limit).astype(int).tolist())
    device = next(model.parameters()).device
    size = model.config.codebook_size
    generator = torch.Generator().manual_seed(0)
    ego, environment, squared, copy_squared, count = [], [], 0.0, 0.0, 0
    sums = {s: {"inferred": 0.0, "shuffled": 0.0, "constant": np.zeros(size)} for s in (1, 2)}
    for batch in device_batches(dataset, batch_size, device):
        output = model(batch, stage=2)
        prediction = model(batch, stage=1).prediction if stage == 1 else output.prediction
        target, current = batch["frames"][:, -1], batch["frames"][:, -2]
        squared += float(((prediction - target) ** 2).sum())
        copy_squared += float(((current - target) ** 2).sum())
        count += target.numel()
        ego.append(output.ego.tokens.cpu().numpy())
        environment.append(output.environment.tokens.cpu().numpy())
        if not baselines:
            continue
        for stage_number, quantized, codebook in (
            (1, output.environment, model.environment_codebook.codebook),
            (2, output.ego, model.ego_codebook.codebook),
        ):
            totals = sums[stage_number]
            environment_code = output.environment.embedding
            totals["inferred"] += _squared_error(model, batch, stage_number, quantized.embedding, environment_code)
            permutation = torch.randperm(len(target), generator=generator).to(device)
            shuffled = quantized.embedding[permutation]
            totals["shuffled"] += _squared_error(model, batch, stage_number, shuffled, environment_code)
            for code in range(size):
                constant = codebook[code].expand(len(target), -1)
                totals["constant"][code] += _squared_error(model, batch, stage_number, constant, environment_code)
    stages = None
    if baselines:
        stages = {
            s: StageReconstruction(t["inferred"] / count, t["shuffled"] / count, t["constant"] / count)
            for s, t in sums.items()
        }
    return LamPredictions(
        np.concatenate(ego), np.concatenate(environment), squared / count, copy_squared / count, stages
    )


# --- what the tokens say -----------------------------------------------------------------


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


def probe_halves(log: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks (fit, score): alternate logs (in order), or the two time halves of a single log."""
    logs = np.unique(log)
    if len(logs) >= 2:
        fit_logs = logs[::2]
        fit = np.isin(log, fit_logs)
    else:
        fit = np.arange(len(log)) < len(log) // 2
    return fit, ~fit


def linear_probe_r2(tokens: np.ndarray, targets: dict[str, np.ndarray], log: np.ndarray, size: int) -> dict:
    """R² on the score half of ridge regressions from one-hot tokens, fit on the other half."""
    fit, score = probe_halves(log)
    one_hot = np.eye(size)[tokens]
    results = {}
    for name, target in targets.items():
        if fit.sum() < 2 or score.sum() < 2 or np.ptp(target[score]) == 0.0:
            results[name] = None  # nothing to explain: R2 is undefined for a constant target
            continue
        probe = Ridge(alpha=1.0).fit(one_hot[fit], target[fit])
        results[name] = float(r2_score(target[score], probe.predict(one_hot[score])))
    return results


def token_information(ego: np.ndarray, environment: np.ndarray, windows: LamWindows, chosen: np.ndarray) -> dict:
    """AMI of each codebook with the ego maneuver and with the other agents' motion."""
    maneuver = windows.maneuver[chosen]
    agents = windows.agents_motion[chosen]
    known = agents != UNKNOWN_AGENTS
    return {
        "ego_ami_maneuver": adjusted_mutual_information(ego, maneuver),
        "env_ami_maneuver": adjusted_mutual_information(environment, maneuver),
        "env_ami_agents": adjusted_mutual_information(environment[known], agents[known]) if known.any() else None,
        "ego_ami_agents": adjusted_mutual_information(ego[known], agents[known]) if known.any() else None,
        "windows_with_agents_truth": int(known.sum()),
    }


def evaluate_lam(
    model: LatentActionModel, windows: LamWindows, limit: int | None = None, stage: int = 2, full: bool = False
) -> tuple[dict, LamPredictions]:
    """The report's numbers (JSON-ready) on ``windows`` (held-out logs). ``full`` adds the
    constant/shuffled baselines, the probes and the glosses (the final report); without it
    the cheap numbers for progress during training."""
    predictions = predict(model, windows, limit=limit, stage=stage, baselines=full)
    if limit is not None and limit < len(windows):
        chosen = np.linspace(0, len(windows) - 1, limit).astype(int)
    else:
        chosen = np.arange(len(windows))
    size = model.config.codebook_size
    ego, environment = predictions.ego_tokens, predictions.environment_tokens
    report = {
        "windows": len(chosen),
        "reconstruction_mse": predictions.reconstruction_mse,
        "copy_last_frame_mse": predictions.copy_mse,
        "recon_improvement_vs_copy": 1.0 - predictions.reconstruction_mse / max(predictions.copy_mse, 1e-12),
        "ego_codes_used": len(np.unique(ego)),
        "env_codes_used": len(np.unique(environment)),
        "ego_perplexity": perplexity(ego, size),
        "env_perplexity": perplexity(environment, size),
    }
    report["ego_collapsed"] = report["ego_perplexity"] < COLLAPSE_PERPLEXITY
    report["env_collapsed"] = report["env_perplexity"] < COLLAPSE_PERPLEXITY
    report.update(token_information(ego, environment, windows, chosen))
    if full:
        report["stage1_environment"] = predictions.stages[1].report(predictions.copy_mse)
        report["stage2_ego"] = predictions.stages[2].report(predictions.copy_mse)
        report["action_gain_vs_constant"] = report["stage2_ego"]["action_gain_vs_constant"]
        targets = {
            "yaw_rate": windows.yaw_rate[chosen],
            "speed_change": windows.speed_change[chosen],
            "speed": windows.speed[chosen],
        }
        probes = linear_probe_r2(ego, targets, windows.log[chosen], size)
        report.update({f"probe_r2_{name}": value for name, value in probes.items()})
        outside = ~windows.perturbed[chosen]
        report["windows_in_injections"] = int((~outside).sum())
        report["ego_ami_maneuver_outside_injections"] = adjusted_mutual_information(
            ego[outside], windows.maneuver[chosen][outside]
        )
        report["logs"] = sorted(set(windows.log_names))
        if len(chosen) == len(windows):  # the baseline's halves are of all windows
            from latentvla_ros.evaluation.cost_volume_baseline import cost_volume_baseline  # imports this module

            report.update(cost_volume_baseline(ego, windows, model.config))
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
    payload = {**report, "glosses_source": "held-out logs", "glosses": glosses}
    (out_dir / "lam_eval.json").write_text(json.dumps(payload, indent=2))
