"""Training the teacher VLM on a labelled cache: ``latentvla train teacher``.

The stage: a teacher (the small Qwen2.5-VL from scratch, or a local checkpoint given by
``model_path``) learns by cross-entropy on the 12 action positions to write the next 12
latent ego actions; full fine-tuning, or LoRA (peft) on the attention projections with the
token embeddings and output layer trained in full (the 16 new tokens live there). Progress
on held-out logs goes to ``metrics.jsonl``; checkpoints resume; under ``torchrun`` the same
command trains with DistributedDataParallel. The result is a directory loadable by
``LatentActionTeacher.from_pretrained`` (LoRA merged), weights in safetensors.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from latentvla_ros.evaluation.teacher_evaluation import evaluate_teacher, majority_token
from latentvla_ros.models.checkpoint import CheckpointError
from latentvla_ros.models.teacher.teacher_config import TeacherConfig
from latentvla_ros.models.teacher.teacher_features import TeacherSamples, load_teacher_samples
from latentvla_ros.models.teacher.teacher_model import DESCRIPTION_FILE, LatentActionTeacher
from latentvla_ros.training.loop import (
    MetricsLog,
    RowNumbers,
    StageSchedule,
    setup_runtime,
    teardown_runtime,
    train_stage,
    write_training_config,
)

MODEL_VERSION = "1.0"
CHECKPOINT_DIR = "teacher_checkpoint"
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]


@dataclass(frozen=True)
class TeacherTrainingConfig:
    # On the 84 minutes of drives make train distils on (7x the LAM's 12): held-out top-1 rises to
    # ~0.40 at 3000 steps. On the LAM's 12 minutes alone it overfit after ~600 steps (held-out
    # NLL 1.88 -> 2.55 at 1500) and barely beat repeating the current action (0.24 vs 0.22).
    steps: int = 3000
    batch_size: int = 16
    learning_rate: float = 5e-4
    evaluate_every: int = 200
    evaluation_frames: int = 256
    lora_rank: int = 0  # 0: full fine-tuning
    seed: int = 0


def _apply_lora(teacher: LatentActionTeacher, rank: int):
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=rank,
        lora_alpha=2 * rank,
        target_modules=LORA_TARGETS,
        modules_to_save=["embed_tokens", "lm_head"],  # the new action tokens must learn
        lora_dropout=0.0,
    )
    return get_peft_model(teacher.model, config)


def _collate(teacher: LatentActionTeacher, samples: TeacherSamples):
    def collate(rows: list[int]) -> dict:
        rows = np.asarray(rows)
        return teacher.encode(
            samples.frames[rows], samples.commands[rows], samples.speeds_mps[rows], samples.targets[rows]
        )

    return collate


def _load_or_build(out_dir: Path, config: TeacherConfig, model_path: Path | None, resume: bool, seed: int):
    """(teacher, step, optimizer state path or None) for a new or a resumed run."""
    checkpoint = out_dir / CHECKPOINT_DIR
    if resume and (checkpoint / DESCRIPTION_FILE).is_file():
        teacher = LatentActionTeacher.from_pretrained(checkpoint)
        return teacher, int(teacher.description["step"]), checkpoint / "state_optimizer"
    if not resume and checkpoint.exists():
        raise CheckpointError(
            f"{out_dir} already holds a training run; pass --resume to continue it or choose another --out"
        )
    if model_path is not None:
        return LatentActionTeacher.from_pretrained(model_path, config), 0, None
    return LatentActionTeacher.build_small(config, seed=seed), 0, None


def train_teacher(
    data: Path,
    out_dir: Path,
    config: TeacherConfig | None = None,
    training: TeacherTrainingConfig | None = None,
    model_path: Path | None = None,
    resume: bool = False,
) -> dict:
    config = config or TeacherConfig()
    training = training or TeacherTrainingConfig()
    out_dir = Path(out_dir)
    runtime = setup_runtime()
    try:
        torch.manual_seed(training.seed)
        teacher, start_step, optimizer_state = _load_or_build(out_dir, config, model_path, resume, training.seed)
        config = teacher.config
        samples = load_teacher_samples(data, config, "train")
        validation = load_teacher_samples(data, config, "val")
        write_training_config(out_dir, config.to_dict(), training)
        majority = majority_token(samples.targets)
        teacher.model.to(runtime.device)
        checkpoint = out_dir / CHECKPOINT_DIR
        network = teacher.model
        if training.lora_rank > 0:
            if optimizer_state is None and runtime.is_main:  # the base, before LoRA changes it in place
                teacher.save_pretrained(checkpoint, MODEL_VERSION, {"majority_token": majority, "step": 0})
            network = _apply_lora(teacher, training.lora_rank)
            if optimizer_state is not None:
                _load_adapter(network, checkpoint)
        network.train()

        def loss(model, batch):
            output = model(**batch)
            return output.loss, {"cross_entropy": output.loss.detach()}

        def evaluate() -> dict:
            report = evaluate_teacher(teacher, validation, majority, limit=training.evaluation_frames, baselines=False)
            return {"val_top1": round(report["teacher_top1"], 4), "val_nll": round(report["teacher_nll"], 4)}

        def save_checkpoint(_stem: Path, extra: dict) -> None:
            if training.lora_rank > 0:  # the base is saved; the adapter (and new embeddings) change
                _save_adapter(network, checkpoint)
                description = json.loads((checkpoint / DESCRIPTION_FILE).read_text())
                (checkpoint / DESCRIPTION_FILE).write_text(json.dumps({**description, **extra}, indent=2))
            else:
                teacher.save_pretrained(checkpoint, MODEL_VERSION, {"majority_token": majority, **extra})

        parameters = [p for p in network.parameters() if p.requires_grad]
        schedule = StageSchedule.for_training(training)
        train_stage(
            "teacher", network, parameters, loss, RowNumbers(len(samples)), schedule, runtime,
            checkpoint / "state", save_checkpoint, evaluate,
            MetricsLog(out_dir / "metrics.jsonl", runtime.is_main), start_step, optimizer_state, training.seed,
            collate=_collate(teacher, samples),
        )  # fmt: skip
        report = {}
        if runtime.is_main:
            if training.lora_rank > 0:
                teacher.model = network.merge_and_unload()
            report = evaluate_teacher(teacher, validation, majority)
            teacher.save_pretrained(
                out_dir / f"teacher_v{MODEL_VERSION}",
                MODEL_VERSION,
                {"majority_token": majority, "metrics": report, "lora_rank": training.lora_rank},
            )
            (out_dir / "teacher_eval.json").write_text(json.dumps(report, indent=2))
    finally:
        teardown_runtime()
    return report


def _save_adapter(network, directory: Path) -> None:
    from peft import get_peft_model_state_dict

    directory.mkdir(parents=True, exist_ok=True)
    state = {key: value.detach().cpu().contiguous() for key, value in get_peft_model_state_dict(network).items()}
    save_file(state, str(directory / "adapter.safetensors"))


def _load_adapter(network, directory: Path) -> None:
    from peft import set_peft_model_state_dict

    set_peft_model_state_dict(network, load_file(str(directory / "adapter.safetensors")))
