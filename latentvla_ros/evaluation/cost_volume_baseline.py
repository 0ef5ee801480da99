"""A training-free ego token for the learned one to beat.

The yaw that best explains frame t+1 from frame t through the calibrated ground-plane warp
(the ego IDM's cost volume: image matching, no learned weights, no labels), quantized into
16 codes by 1-D k-means fit on the probe's fit half of the logs. Scored on the other half
beside the model's ego token on the same windows, its AMI with the maneuver says how much
of the token's AMI a camera model and a search already give, and how much the LAM adds.
What it measured is in docs/experiments.md ("A training-free ego token").
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.cluster import KMeans

from latentvla_ros.evaluation.latent_action_evaluation import adjusted_mutual_information, perplexity, probe_halves
from latentvla_ros.models.latent_action import EGO_SPEED_SCALE_MPS, LatentActionConfig, MotionCostVolume
from latentvla_ros.models.latent_action_features import LamDataset, LamWindows, device_batches

BASELINE_CODES = 16
# The costs are standardized per window; this sharpness turns them into weights over the
# candidate yaws whose mean is a yaw between the grid's points.
SOFTMIN_SHARPNESS = 4.0


@torch.no_grad()
def cost_volume_yaw(windows: LamWindows, config: LatentActionConfig, batch_size: int = 64) -> np.ndarray:
    """(N,) the yaw over each window's step (rad) that best explains frame t+1 from frame t:
    the soft-argmin over the cost volume's candidates, at the windows' frame size."""
    volume = MotionCostVolume(config)  # whether the model itself reads one does not matter
    yaws = volume.candidates[:, 1]
    estimates = []
    for batch in device_batches(LamDataset(windows), batch_size, "cpu"):
        frames = batch["frames"]
        costs = volume(frames[:, -2], frames[:, -1], batch["ego_state"][:, 0] * EGO_SPEED_SCALE_MPS)
        estimates.append(torch.softmax(-SOFTMIN_SHARPNESS * costs, dim=1) @ yaws)
    return torch.cat(estimates).numpy() if estimates else np.zeros(0, np.float32)


def quantized(values: np.ndarray, fit: np.ndarray, codes: int = BASELINE_CODES) -> np.ndarray:
    """(N,) codes of ``values`` by 1-D k-means fit on ``values[fit]`` (fewer codes when the
    fit half has fewer distinct values)."""
    codes = min(codes, len(np.unique(values[fit])))
    if codes < 2:
        return np.zeros(len(values), np.int64)
    means = KMeans(codes, n_init=4, random_state=0).fit(values[fit, None])
    return means.predict(values[:, None]).astype(np.int64)


def cost_volume_baseline(ego_tokens: np.ndarray, windows: LamWindows, config: LatentActionConfig) -> dict:
    """The training-free token and the model's ego token, both scored on the probe's score half."""
    fit, score = probe_halves(windows.log)
    if fit.sum() < 2 or score.sum() < 2:
        return {}
    tokens = quantized(cost_volume_yaw(windows, config), fit)
    maneuver = windows.maneuver[score]
    return {
        "cost_volume_token_ami_maneuver": adjusted_mutual_information(tokens[score], maneuver),
        "cost_volume_token_perplexity": perplexity(tokens[score], BASELINE_CODES),
        "cost_volume_token_codes_used": len(np.unique(tokens[score])),
        "ego_ami_maneuver_score_half": adjusted_mutual_information(ego_tokens[score], maneuver),
        "baseline_windows": int(score.sum()),
    }
