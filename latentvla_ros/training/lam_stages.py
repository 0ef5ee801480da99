"""Training the latent action model from a dataset cache: the pipeline is the list of stages.

1. ``stage1_environment``: environment encoder + decoder, told the ego motion.
2. ``stage2_ego``: environment codebook frozen; the ego encoder learns the ego action.
3. ``describe_codes``: evaluate on held-out logs, gloss every ego code, write the model.

Every progress evaluation measures the stage's codebook on a held-out slice in eval
mode (as it will be used) and stops the run with one message when it stays below
perplexity 2 after warm-up: a collapsed codebook never ships silently again.

``latentvla train lam --data CACHE --out DIR`` runs them in order; ``--resume``
continues from the last checkpoint in DIR; under ``torchrun`` on GPUs the same
command trains with DistributedDataParallel.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from latentvla_ros.evaluation.latent_action_evaluation import (
    COLLAPSE_PERPLEXITY,
    CodebookCollapseError,
    code_glosses,
    evaluate_lam,
    write_code_grid,
    write_report,
)
from latentvla_ros.models.checkpoint import (
    CheckpointError,
    read_description,
    resume_point,
    save_model,
)
from latentvla_ros.models.latent_action import LatentActionConfig, LatentActionModel
from latentvla_ros.models.latent_action_features import (
    FrameSizeError,
    LamDataset,
    LamWindows,
    device_batches,
    load_windows,
)
from latentvla_ros.models.latent_action_loading import MODEL_KIND
from latentvla_ros.training.loop import (
    MetricsLog,
    StageSchedule,
    setup_runtime,
    teardown_runtime,
    train_stage,
    write_training_config,
)

MODEL_VERSION = "2.0"  # 2: layer-normalized IDM features (v1.0's environment codebook collapsed)
CHECKPOINT_NAME = "lam_checkpoint"
ASPECT_TOLERANCE = 0.02


@dataclass(frozen=True)
class LamTrainingConfig:
    stage1_steps: int = 1200
    stage2_steps: int = 2000
    batch_size: int = 64
    learning_rate: float = 1e-3
    evaluate_every: int = 200
    evaluation_windows: int = 512
    seed: int = 0
    # The collapse guard checks each progress evaluation from this step of a stage on.
    collapse_warmup_steps: int = 400
    recalibration_batches: int = 16
    # Decay each stage's learning rate to 0 at its last step, not constant after warm-up.
    # Measured on a weighted 80 x 40 stage 2 (docs/experiments.md): no better ego AMI.
    cosine_decay: bool = False


def check_data_fits(cache_dir: Path, config: LatentActionConfig) -> None:
    """Stop at once, with one message, if the data's frames or rate do not fit the config."""
    index = json.loads((Path(cache_dir) / "dataset.json").read_text())
    for entry in index["logs"]:
        meta = json.loads((Path(cache_dir) / entry["name"] / "meta.json").read_text())
        height, width = meta["frame_shape"][:2]
        if (
            abs(width / height - config.frame_width / config.frame_height)
            > ASPECT_TOLERANCE * config.frame_width / config.frame_height
        ):
            model_aspect = config.frame_width / config.frame_height
            raise FrameSizeError(
                f"{entry['name']}: frames are {width}x{height} (aspect {width / height:.2f}); the model is "
                f"configured for {config.frame_width}x{config.frame_height} (aspect {model_aspect:.2f})"
            )
        with np.load(Path(cache_dir) / entry["name"] / "samples.npz") as arrays:
            stamps = arrays["frame_stamps_ns"]
        period_s = float(np.median(np.diff(stamps))) * 1e-9 if len(stamps) > 1 else config.frame_period_s
        if abs(period_s - config.frame_period_s) > 0.1 * config.frame_period_s:
            raise FrameSizeError(
                f"{entry['name']}: camera frames every {period_s:.3f} s; the model's step of "
                f"{config.step_frames} frames assumes {config.frame_period_s:.3f} s"
            )


# The camera model of the ground-plane warps.
CAMERA_FIELDS = frozenset(
    {
        "camera_horizontal_fov_deg",
        "camera_height_m",
        "camera_pitch_down_deg",
        "camera_forward_m",
        "max_ground_distance_m",
    }
)
# Options of stage 2 only: a trained stage 1 can be reused by a run that changes them
# (the camera too, unless stage 1 warps by the ego motion: see stage2_only_fields).
STAGE2_ONLY_FIELDS = CAMERA_FIELDS | frozenset(
    {
        "ego_dead_code_threshold",
        "ego_speed_adversary_weight",
        "ego_decoder_speed",
        "ego_decoder_warp",
        "ego_action_warp_only",
        "ego_warp_geometry",
        "ego_motion_cost_volume",
        "cost_volume_max_yaw_rad",
        "cost_volume_yaw_steps",
        "cost_volume_max_lateral_m",
        "cost_volume_lateral_steps",
    }
)


def stage2_only_fields(config: LatentActionConfig) -> frozenset[str]:
    """STAGE2_ONLY_FIELDS for ``config``: with ``environment_ego_warp`` the camera is stage 1's as well."""
    return STAGE2_ONLY_FIELDS - CAMERA_FIELDS if config.environment_ego_warp else STAGE2_ONLY_FIELDS


def reuse_stage1(model: LatentActionModel, source: Path) -> dict:
    """Load another trained model's stage 1 (environment encoder, codebook, decoder) into
    ``model`` and freeze it; the configurations may differ only in stage-2 options."""
    from latentvla_ros.models.latent_action_loading import load_latent_action_model

    trained, description = load_latent_action_model(Path(source))
    mine = json.loads(json.dumps(model.config.to_dict()))
    theirs = json.loads(json.dumps(trained.config.to_dict()))
    stage2_only = stage2_only_fields(model.config)
    differing = sorted(key for key in mine if key not in stage2_only and mine[key] != theirs.get(key))
    if differing:
        raise CheckpointError(f"--stage1-from {source}: its stage 1 was trained with other {', '.join(differing)}")
    prefixes = tuple(f"{name}." for name in LatentActionModel.STAGE1_MODULES)
    state = {key: value for key, value in trained.state_dict().items() if key.startswith(prefixes)}
    model.load_state_dict(state, strict=False)
    model.freeze_environment()
    return {"stage1_from": str(source), "stage1_sha256": description.get("sha256")}


def _save(model: LatentActionModel, stem: Path, extra: dict) -> None:
    save_model(model, model.config.to_dict(), stem, MODEL_KIND, MODEL_VERSION, extra)


def _train_lam_stage(
    stage: int,
    name: str,
    steps: int,
    report_keys: tuple[str, ...],
    model,
    windows,
    validation,
    training: LamTrainingConfig,
    out_dir: Path,
    runtime,
    metrics,
    start_step: int,
    resume,
) -> None:
    """What both stages share: the loss of ``stage``, held-out progress, the loop."""

    def loss(network, batch):
        output = network(batch, stage)
        return output.loss, {key: value.detach() for key, value in output.losses.items()}

    codebook = "env" if stage == 1 else "ego"
    report_keys = (*report_keys, f"{codebook}_codes_used", f"{codebook}_perplexity")

    recalibration = _recalibration_batches(windows, training, runtime)

    def evaluate() -> dict:
        # Measured as it will be used: with exact batch-norm statistics for these weights (the
        # running averages lag weights that keep moving, ~1 std at step 200, and that alone
        # can put most held-out windows on one code).
        model.recalibrate_norm(recalibration, stage)
        report, _ = evaluate_lam(model, validation, limit=training.evaluation_windows, stage=stage)
        return {key: round(report[key], 4) if isinstance(report[key], float) else report[key] for key in report_keys}

    def check(step: int, record: dict) -> None:
        """The collapse guard: after warm-up, a held-out perplexity below 2 stops the run."""
        if step >= training.collapse_warmup_steps and record[f"{codebook}_perplexity"] < COLLAPSE_PERPLEXITY:
            raise CodebookCollapseError(
                f"{name} step {step}: the {'environment' if stage == 1 else 'ego'} codebook collapsed (held-out "
                f"perplexity {record[f'{codebook}_perplexity']:.2f} < {COLLAPSE_PERPLEXITY:.0f}, "
                f"{record[f'{codebook}_codes_used']} code(s) used); see {out_dir / 'metrics.jsonl'}"
            )

    schedule = lam_schedule(steps, training)
    train_stage(
        name, model, model.stage_parameters(stage), loss, LamDataset(windows), schedule, runtime,
        out_dir / CHECKPOINT_NAME, lambda stem, extra: _save(model, stem, extra), evaluate, metrics,
        start_step, resume, training.seed + stage - 1, check,
    )  # fmt: skip
    model.recalibrate_norm(recalibration, stage)


def lam_schedule(steps: int, training: LamTrainingConfig) -> StageSchedule:
    """One LAM stage's schedule of ``steps`` steps: 50 warm-up steps, then constant or cosine."""
    return StageSchedule(
        steps,
        training.batch_size,
        training.learning_rate,
        evaluate_every=training.evaluate_every,
        cosine_decay=training.cosine_decay,
    )


def _recalibration_batches(windows, training: LamTrainingConfig, runtime) -> list[dict]:
    """A fixed, seeded set of training batches for the batch-norm recalibration."""
    dataset = LamDataset(windows)
    generator = torch.Generator().manual_seed(training.seed)
    count = min(len(dataset), training.recalibration_batches * training.batch_size)
    rows = torch.randperm(len(dataset), generator=generator)[:count].tolist()
    return list(device_batches(torch.utils.data.Subset(dataset, rows), training.batch_size, runtime.device))


def stage1_environment(model, windows, validation, training, out_dir, runtime, metrics, start_step=0, resume=None):
    """Stage 1: the environment action, with the true ego motion given; then frozen."""
    keys = ("recon_improvement_vs_copy", "env_ami_agents", "env_ami_maneuver")
    _train_lam_stage(
        1, "stage1_environment", training.stage1_steps, keys, model, windows, validation, training, out_dir,
        runtime, metrics, start_step, resume,
    )  # fmt: skip
    model.freeze_environment()


def stage2_ego(model, windows, validation, training, out_dir, runtime, metrics, start_step=0, resume=None):
    """Stage 2: the ego action, given the frozen environment action instead of the ego motion."""
    model.freeze_environment()
    keys = ("recon_improvement_vs_copy", "env_codes_used", "env_perplexity", "ego_ami_maneuver", "env_ami_agents")
    _train_lam_stage(
        2, "stage2_ego", training.stage2_steps, keys, model, windows, validation, training, out_dir,
        runtime, metrics, start_step, resume,
    )  # fmt: skip


def describe_codes(model: LatentActionModel, validation: LamWindows, out_dir: Path) -> dict:
    """The full report and the glosses, both on the held-out logs; the model file."""
    report, predictions = evaluate_lam(model, validation, full=True)
    glosses = code_glosses(
        predictions.ego_tokens, validation.acceleration, validation.yaw_rate, model.config.codebook_size
    )
    write_report(out_dir, report, glosses)
    write_code_grid(out_dir / "lam_codes.png", validation, predictions.ego_tokens, glosses)
    (out_dir / f"lam_v{MODEL_VERSION}_gloss.json").write_text(json.dumps(glosses, indent=2))
    extra = {"metrics": report, "glosses_source": "held-out logs", "glosses": glosses, "step_s": validation.step_s}
    _save(model, out_dir / f"lam_v{MODEL_VERSION}", extra)
    return report


def train_lam(
    data: Path,
    out_dir: Path,
    config: LatentActionConfig | None = None,
    training: LamTrainingConfig | None = None,
    resume: bool = False,
    stage1_from: Path | None = None,
) -> dict:
    """Both stages in order (``stage1_from``: reuse that model's stage 1, train stage 2 only)."""
    config = config or LatentActionConfig()
    training = training or LamTrainingConfig()
    out_dir = Path(out_dir)
    runtime = setup_runtime()
    try:
        check_data_fits(data, config)
        torch.manual_seed(training.seed)
        model = LatentActionModel(config).to(runtime.device)
        checkpoint = out_dir / CHECKPOINT_NAME
        step, optimizer_state = resume_point(checkpoint, model, resume, out_dir, config.to_dict())
        stage = "stage1_environment" if optimizer_state is None else read_description(checkpoint, MODEL_KIND)["stage"]
        reused = {}
        if stage1_from is not None and stage == "stage1_environment":
            reused = reuse_stage1(model, stage1_from)
            stage = "stage2_ego"
        write_training_config(out_dir, config.to_dict(), training, **reused)
        windows = load_windows(data, config, "train")
        validation = load_windows(data, config, "val")
        metrics = MetricsLog(out_dir / "metrics.jsonl", runtime.is_main)
        if stage == "stage1_environment":
            stage1_environment(model, windows, validation, training, out_dir, runtime, metrics, step, optimizer_state)
            step, optimizer_state = 0, None
        else:
            model.freeze_environment()
        if stage != "stage2_ego" or step < training.stage2_steps:
            stage2_ego(
                model,
                windows,
                validation,
                training,
                out_dir,
                runtime,
                metrics,
                step if stage == "stage2_ego" else 0,
                optimizer_state,
            )
        report = describe_codes(model, validation, out_dir) if runtime.is_main else {}
    finally:
        teardown_runtime()
    return report


__all__ = ["FrameSizeError", "LamTrainingConfig", "train_lam"]
