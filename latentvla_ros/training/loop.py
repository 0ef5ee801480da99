"""The training loop every stage shares: single process on CPU, or several
processes on GPUs under ``torchrun`` (DistributedDataParallel) with no change.

Progress bar and metrics log (one JSON line per evaluation) on rank 0;
periodic checkpoints (safetensors + JSON, optimizer included) to resume from.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import distributed
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler
from tqdm import tqdm

from latentvla_ros.models.checkpoint import load_optimizer, save_optimizer


@dataclass(frozen=True)
class Runtime:
    """Where this process trains: device, rank, world size."""

    device: torch.device
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_runtime() -> Runtime:
    """Join torchrun's process group when launched by it (WORLD_SIZE > 1), else one process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size > 1 and not distributed.is_initialized():
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if torch.cuda.is_available():
            torch.cuda.set_device(local_rank)
            distributed.init_process_group("nccl")
            device = torch.device("cuda", local_rank)
        else:
            distributed.init_process_group("gloo")
            device = torch.device("cpu")
        return Runtime(device, distributed.get_rank(), world_size)
    return Runtime(torch.device("cuda" if torch.cuda.is_available() else "cpu"))


def teardown_runtime() -> None:
    if distributed.is_initialized():
        distributed.destroy_process_group()


@dataclass(frozen=True)
class StageSchedule:
    steps: int
    batch_size: int = 64
    learning_rate: float = 1e-3
    warmup_steps: int = 50
    evaluate_every: int = 100
    checkpoint_every: int = 200
    cosine_decay: bool = False  # after warm-up, decay the learning rate to 0 at the last step

    @staticmethod
    def for_training(training, cosine_decay: bool = False) -> StageSchedule:
        """The student's, planner's and teacher's schedule: ``training``'s steps, batch size and
        learning rate, 100 warm-up steps, a checkpoint at every evaluation."""
        return StageSchedule(
            training.steps,
            training.batch_size,
            training.learning_rate,
            warmup_steps=100,
            evaluate_every=training.evaluate_every,
            checkpoint_every=training.evaluate_every,
            cosine_decay=cosine_decay,
        )

    def learning_rate_at(self, step: int) -> float:
        warmup = min(1.0, (step + 1) / self.warmup_steps)
        if not self.cosine_decay or step < self.warmup_steps:
            return self.learning_rate * warmup
        progress = (step - self.warmup_steps) / max(1, self.steps - self.warmup_steps)
        return self.learning_rate * 0.5 * (1.0 + math.cos(math.pi * progress))


def write_training_config(out_dir: Path, model_config: dict, training, **extra) -> None:
    """``training_config.json`` in a run's ``out_dir``: the model's and the training's settings."""
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = {"model": model_config, "training": asdict(training), **extra}
    (out_dir / "training_config.json").write_text(json.dumps(settings, indent=2))


class RowNumbers(Dataset):
    """The numbers 0..count-1: stages whose ``collate`` builds the batch from rows of their samples."""

    def __init__(self, count: int) -> None:
        self.count = count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> int:
        return index


class MetricsLog:
    def __init__(self, path: Path, enabled: bool) -> None:
        self.path = Path(path)
        self.enabled = enabled

    def write(self, record: dict) -> None:
        if self.enabled:
            with self.path.open("a") as stream:
                stream.write(json.dumps(record) + "\n")


def train_stage(
    name: str,
    model: torch.nn.Module,
    parameters: list[torch.nn.Parameter],
    loss_fn: Callable[[torch.nn.Module, dict], tuple[torch.Tensor, dict]],
    dataset,
    schedule: StageSchedule,
    runtime: Runtime,
    checkpoint_stem: Path,
    save_checkpoint: Callable[[Path, dict], None],
    evaluate: Callable[[], dict],
    metrics: MetricsLog,
    start_step: int = 0,
    resume_optimizer: Path | None = None,
    seed: int = 0,
    check: Callable[[int, dict], None] | None = None,
    collate: Callable[[list], dict] | None = None,
) -> None:
    """Run ``schedule.steps`` optimizer steps of one stage (continuing at ``start_step``).

    Every ``evaluate_every`` steps: ``evaluate()`` adds held-out numbers to the metrics
    log, then ``check(step, record)`` may stop training by raising. ``collate`` turns a list
    of dataset items into a batch (default: torch's stacking)."""
    trainable = {id(p) for p in parameters}
    for parameter in model.parameters():
        parameter.requires_grad_(id(parameter) in trainable)
    network = model
    if runtime.world_size > 1:
        # Codebook buffers are kept identical by all-reduced EMA updates, not by broadcasting.
        network = DistributedDataParallel(model, broadcast_buffers=False)
    optimizer = torch.optim.AdamW(parameters, lr=schedule.learning_rate, weight_decay=1e-4)
    if resume_optimizer is not None:
        load_optimizer(optimizer, resume_optimizer)
    generator = torch.Generator().manual_seed(seed + start_step)
    if runtime.world_size > 1:
        sampler = DistributedSampler(dataset, num_replicas=runtime.world_size, rank=runtime.rank, seed=seed)
    else:
        sampler = RandomSampler(dataset, replacement=True, num_samples=10**9, generator=generator)

    def batches(sampler) -> DataLoader:
        return DataLoader(dataset, schedule.batch_size, sampler=sampler, drop_last=True, collate_fn=collate)

    loader = iter(batches(sampler))
    started = time.perf_counter()
    progress = tqdm(total=schedule.steps, initial=start_step, desc=name, disable=not runtime.is_main, mininterval=5.0)
    epoch = 0
    model.train()
    for step in range(start_step, schedule.steps):
        try:
            batch = next(loader)
        except StopIteration:  # DistributedSampler: one pass per epoch
            epoch += 1
            sampler.set_epoch(epoch)
            loader = iter(batches(sampler))
            batch = next(loader)
        batch = {key: value.to(runtime.device) if torch.is_tensor(value) else value for key, value in batch.items()}
        for group in optimizer.param_groups:
            group["lr"] = schedule.learning_rate_at(step)
        loss, terms = loss_fn(network, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        progress.update(1)
        if runtime.is_main and ((step + 1) % schedule.evaluate_every == 0 or step + 1 == schedule.steps):
            model.eval()
            record = {"stage": name, "step": step + 1, "elapsed_s": round(time.perf_counter() - started, 1)}
            record.update({key: round(float(value), 6) for key, value in terms.items()})
            record.update(evaluate())
            metrics.write(record)
            if check is not None:  # after writing: a failed check leaves its numbers in the log
                check(step + 1, record)
            progress.set_postfix({key: record[key] for key in list(record)[3:6]})
            model.train()
        if runtime.is_main and ((step + 1) % schedule.checkpoint_every == 0 or step + 1 == schedule.steps):
            save_checkpoint(checkpoint_stem, {"stage": name, "step": step + 1})
            save_optimizer(
                optimizer,
                checkpoint_stem.with_name(checkpoint_stem.name + "_optimizer"),
                {"stage": name, "step": step + 1},
            )
    progress.close()
    model.eval()
