"""Load a latent action model from its safetensors + JSON files (shipped or trained)."""

from __future__ import annotations

from pathlib import Path

import torch

from latentvla_ros.models.checkpoint import load_weights, read_description
from latentvla_ros.models.latent_action import LatentActionConfig, LatentActionModel

MODEL_KIND = "latent_action_model"


def load_latent_action_model(path_stem: Path, device: str | torch.device = "cpu") -> tuple[LatentActionModel, dict]:
    """(model in eval mode with both codebooks frozen, its JSON description)."""
    description = read_description(Path(path_stem), MODEL_KIND)
    model = LatentActionModel(LatentActionConfig.from_dict(description["config"]))
    load_weights(model, Path(path_stem))
    model.freeze_environment()
    model.ego_codebook.freeze()
    return model.to(device).eval(), description
