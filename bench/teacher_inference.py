"""Teacher VLM inference time per camera frame on this machine.

Ours: ``LatentActionTeacher.predict`` on one input (batch 1, its frame history), i.e. what
the teacher node does per frame: image processing and constrained greedy decoding of the 12
action tokens, whose steps also give the distributions and the fusion embeddings.
Reference, in the same run: one teacher-forced forward pass of the same model over the same
sequence (the least any decoder of 12 tokens must compute), so the ratio line shows what the
decoding costs on top.

    .venv/bin/python bench/teacher_inference.py [--model models/teacher_v1.0] [--runs 30]
    .venv/bin/python bench/teacher_inference.py --paper-size --runs 2   # Qwen2.5-VL-3B config, random weights

The student (a later network) is timed beside it once it exists.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

from latentvla_ros.models.teacher.teacher_config import QWEN25_VL_3B, TeacherConfig
from latentvla_ros.models.teacher.teacher_model import LatentActionTeacher

REPO_ROOT = Path(__file__).resolve().parents[1]


def paper_size_teacher() -> LatentActionTeacher:
    """The 3B architecture with random weights (no download), the small teacher's tokenizer and
    image processor (the sequence layout is the same)."""
    small = LatentActionTeacher.build_small(TeacherConfig())
    config = Qwen2_5_VLConfig(**QWEN25_VL_3B)
    ids = small.tokenizer.convert_tokens_to_ids
    config.image_token_id = ids("<|image_pad|>")
    config.vision_start_token_id = ids("<|vision_start|>")
    config.vision_end_token_id = ids("<|vision_end|>")
    config.video_token_id = ids("<|video_pad|>")
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    return LatentActionTeacher(model, small.tokenizer, small.image_processor, TeacherConfig())


def time_calls(function, runs: int) -> list[float]:
    function()  # warm-up
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        function()
        times.append((time.perf_counter() - started) * 1e3)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(REPO_ROOT / "models" / "teacher_v1.0"))
    parser.add_argument("--paper-size", action="store_true", help="the Qwen2.5-VL-3B architecture, random weights")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    teacher = paper_size_teacher() if args.paper_size else LatentActionTeacher.from_pretrained(Path(args.model))
    config = teacher.config
    frames = np.random.default_rng(0).integers(0, 255, (1, config.history_frames, 128, 256, 3), dtype=np.uint8)
    command, speed = np.array([1]), np.array([12.0])
    targets = np.zeros((1, config.horizon), dtype=np.int64)
    batch = teacher.encode(frames, command, speed, targets)
    batch.pop("labels")

    def predict() -> None:
        teacher.predict(frames, command, speed)

    @torch.no_grad()
    def forward() -> None:
        teacher.model(**batch)

    parameters = sum(p.numel() for p in teacher.model.parameters())
    rows = [
        ("teacher predict (ours)", time_calls(predict, args.runs)),
        ("one forward pass", time_calls(forward, args.runs)),
    ]
    name = "Qwen2.5-VL-3B config, random weights" if args.paper_size else args.model
    print(f"teacher: {name}, {parameters / 1e6:.1f} M parameters, {args.threads} threads, batch 1")
    print(f"{'what':28s} {'median ms':>10s} {'p90 ms':>8s} {'min ms':>8s}")
    for label, times in rows:
        p90 = float(np.percentile(times, 90))
        print(f"{label:28s} {statistics.median(times):10.1f} {p90:8.1f} {min(times):8.1f}")
    ratio = statistics.median(rows[0][1]) / statistics.median(rows[1][1])
    print(f"ratio: teacher predict per frame / one forward pass = {ratio:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
