"""Model files: weights in safetensors, config and version in JSON beside them. Never pickle.

``<name>.safetensors`` + ``<name>.json`` = {"kind", "version": "major.minor", "config",
"sha256", ...}. Major changes with the interface (inputs, outputs, sizes, token meaning),
minor with new weights. ``sha256`` is the digest of the weights file: loading refuses a
file that does not match its description. Training state for resuming (optimizer
moments, step) is saved the same way.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file


class CheckpointError(ValueError):
    """A model file that does not fit what loads it; the message says how."""


def _with(stem: Path, suffix: str) -> Path:
    """``stem`` + suffix; not Path.with_suffix, which would eat the ".0" of "lam_v1.0"."""
    return stem.parent / (stem.name + suffix)


def _stem(path: Path) -> Path:
    path = Path(path)
    for suffix in (".safetensors", ".json"):
        if path.name.endswith(suffix):
            return path.parent / path.name[: -len(suffix)]
    return path


def save_model(
    model: torch.nn.Module, config: dict, path_stem: Path, kind: str, version: str, extra: dict | None = None
) -> Path:
    """Write ``path_stem``.safetensors (state dict incl. buffers) and ``path_stem``.json."""
    path_stem = _stem(path_stem)
    path_stem.parent.mkdir(parents=True, exist_ok=True)
    state = {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}
    save_file(state, str(_with(path_stem, ".safetensors")))
    digest = file_sha256(_with(path_stem, ".safetensors"))
    description = {"kind": kind, "version": version, "config": config, "sha256": digest, **(extra or {})}
    _with(path_stem, ".json").write_text(json.dumps(description, indent=2))
    return _with(path_stem, ".safetensors")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_description(path_stem: Path, kind: str) -> dict:
    path_stem = _stem(path_stem)
    description_path = _with(path_stem, ".json")
    if not description_path.is_file() or not _with(path_stem, ".safetensors").is_file():
        raise CheckpointError(f"{path_stem}: needs {path_stem.name}.safetensors and {path_stem.name}.json")
    description = json.loads(description_path.read_text())
    if description.get("kind") != kind:
        raise CheckpointError(f"{description_path}: a '{description.get('kind')}' model, expected '{kind}'")
    return description


def verify_sha256(path_stem: Path) -> None:
    """Refuse weights whose digest differs from the one their JSON records (if it records one)."""
    path_stem = _stem(path_stem)
    expected = json.loads(_with(path_stem, ".json").read_text()).get("sha256")
    if expected is None:
        return
    found = file_sha256(_with(path_stem, ".safetensors"))
    if found != expected:
        raise CheckpointError(
            f"{_with(path_stem, '.safetensors')}: sha256 {found[:12]}… does not match {expected[:12]}… recorded in "
            f"{path_stem.name}.json (a changed or damaged file); refusing to load it"
        )


def load_weights(model: torch.nn.Module, path_stem: Path) -> None:
    path_stem = _stem(path_stem)
    verify_sha256(path_stem)
    state = load_file(str(_with(path_stem, ".safetensors")))
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as error:  # tensor shapes differ: another configuration
        first = str(error).split("\n\t")[1] if "\n\t" in str(error) else str(error)
        raise CheckpointError(f"{path_stem}: weights do not fit the model ({first})") from error
    if missing or unexpected:
        raise CheckpointError(
            f"{path_stem}: weights do not fit the model (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )


def load_model(path_stem: Path, kind: str, config_type, model_type, expected=None):
    """(model in eval mode, description) of a model whose config class has ``from_dict``/``to_dict``;
    ``expected``: a config the file must match (one clear error naming every difference)."""
    description = read_description(path_stem, kind)
    config = config_type.from_dict(description["config"])
    if expected is not None:
        require_same_config(config.to_dict(), expected.to_dict(), str(path_stem))
    model = model_type(config)
    load_weights(model, path_stem)
    model.eval()
    return model, description


def resume_point(
    checkpoint: Path, model: torch.nn.Module, resume: bool, out_dir: Path, config: dict | None = None
) -> tuple[int, Path | None]:
    """(start step, optimizer state) of a run in ``out_dir``: the checkpoint's with ``resume``,
    (0, None) for a new run; an existing run without ``resume`` is refused, never overwritten,
    and so is resuming a checkpoint of another ``config`` (the model's configuration dict)."""
    description = _with(checkpoint, ".json")
    if resume and description.is_file():
        saved = json.loads(description.read_text())
        if config is not None:  # through JSON tuples became lists: compare as JSON values
            require_same_config(saved["config"], json.loads(json.dumps(config)), f"checkpoint {checkpoint}")
        load_weights(model, checkpoint)
        step = int(saved["step"])
        return step, checkpoint.parent / (checkpoint.name + "_optimizer")
    if not resume and description.exists():
        raise CheckpointError(
            f"{out_dir} already holds a training run; pass --resume to continue it or choose another --out"
        )
    return 0, None


def require_same_config(found: dict, expected: dict, what: str) -> None:
    """One clear error naming every differing field."""
    differences = [
        f"{key}: {found.get(key)!r} != {expected.get(key)!r}"
        for key in sorted(set(found) | set(expected))
        if found.get(key) != expected.get(key)
    ]
    if differences:
        raise CheckpointError(f"{what} has another configuration ({'; '.join(differences)})")


def save_optimizer(optimizer: torch.optim.Optimizer, path: Path, scalars: dict) -> None:
    """Optimizer moments as safetensors, step counters and ``scalars`` as JSON (resumable, no pickle)."""
    tensors, counters = {}, {}
    state = optimizer.state_dict()
    for parameter_id, parameter_state in state["state"].items():
        for name, value in parameter_state.items():
            if torch.is_tensor(value) and value.ndim > 0:
                tensors[f"{parameter_id}.{name}"] = value.detach().cpu().contiguous()
            else:
                counters[f"{parameter_id}.{name}"] = float(value)
    save_file(tensors, str(_with(_stem(path), ".safetensors")))
    _with(_stem(path), ".json").write_text(
        json.dumps({"counters": counters, "param_groups": state["param_groups"], **scalars})
    )


def load_optimizer(optimizer: torch.optim.Optimizer, path: Path) -> dict:
    """Restore what :func:`save_optimizer` wrote; returns its scalars."""
    tensors = load_file(str(_with(_stem(path), ".safetensors")))
    saved = json.loads(_with(_stem(path), ".json").read_text())
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        parameter_id, name = key.split(".", 1)
        state.setdefault(int(parameter_id), {})[name] = value
    for key, value in saved["counters"].items():
        parameter_id, name = key.split(".", 1)
        state.setdefault(int(parameter_id), {})[name] = torch.tensor(value)
    optimizer.load_state_dict({"state": state, "param_groups": saved["param_groups"]})
    return {key: value for key, value in saved.items() if key not in ("counters", "param_groups")}
