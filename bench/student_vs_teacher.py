"""The student against the teacher, per camera frame, at the paper's sizes (random weights).

Ours: the ~50 M-parameter student (``PAPER_STUDENT``: 256 x 512 frames, two of them) writing
12 latent-action distributions and the fusion embeddings in one pass. Reference, in the same
run: the Qwen2.5-VL-3B teacher doing the same job (image processing, constrained decoding of
the 12 action tokens, which also give the embeddings; ``LatentActionTeacher.predict``). Batch 1,
float32, this machine's threads. The ratio line is the teacher's time over the student's (the
target is at least 20x). With ``--shipped`` the shipped small models instead.

    .venv/bin/python bench/student_vs_teacher.py [--runs 3] [--shipped]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from teacher_inference import paper_size_teacher, time_calls

from latentvla_ros.models.student import PAPER_STUDENT, LatentActionStudent
from latentvla_ros.models.teacher.teacher_model import LatentActionTeacher

REPO_ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--shipped", action="store_true", help="the shipped small student and teacher")
    args = parser.parse_args()
    torch.manual_seed(0)
    if args.shipped:
        student, _ = LatentActionStudent.load(REPO_ROOT / "models" / "student_v1.0")
        teacher = LatentActionTeacher.from_pretrained(REPO_ROOT / "models" / "teacher_v1.0")
    else:
        student = LatentActionStudent(PAPER_STUDENT).eval()
        teacher = paper_size_teacher()
    rng = np.random.default_rng(0)
    s = student.config
    student_frames = torch.from_numpy(
        rng.integers(0, 255, (1, s.history_frames, s.image_height, s.image_width, 3), np.uint8)
    )
    t = teacher.config
    teacher_frames = rng.integers(0, 255, (1, t.history_frames, t.image_height, t.image_width, 3), np.uint8)
    status, command = torch.tensor([[10.0, 0.0, 0.0, 0.0, 0.0]]), torch.tensor([1])

    def run_student() -> None:
        with torch.inference_mode():
            student(student_frames, status, command)

    def run_teacher() -> None:
        with torch.inference_mode():
            teacher.predict(teacher_frames, np.array([1]), np.array([10.0]))

    student_ms = time_calls(run_student, args.runs)
    teacher_ms = time_calls(run_teacher, args.runs)
    parameters = {
        "student": sum(p.numel() for p in student.parameters()) / 1e6,
        "teacher": sum(p.numel() for p in teacher.model.parameters()) / 1e6,
    }
    print(f"threads: {torch.get_num_threads()}, runs: {args.runs}, {'shipped' if args.shipped else 'paper sizes'}")
    print(f"{'model':10s} {'params (M)':>11s} {'median ms':>10s} {'min ms':>9s}")
    for name, times in (("student", student_ms), ("teacher", teacher_ms)):
        print(f"{name:10s} {parameters[name]:11.1f} {statistics.median(times):10.1f} {min(times):9.1f}")
    ratio = statistics.median(teacher_ms) / statistics.median(student_ms)
    print(f"ratio: teacher / student = {ratio:.1f}x (median per frame)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
