"""The ``latentvla`` subcommands of the student and the planner: ``train student``,
``train planner [--no-fusion]``, ``eval student``, ``eval planner`` (wired in ``cli``)."""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from latentvla_ros.cli_bag_options import add_bag_topic_options
from latentvla_ros.cli_config_overrides import add_config_overrides, config_with
from latentvla_ros.environment import (
    SHIPPED_LAM,
    SHIPPED_NO_FUSION_PLANNER,
    SHIPPED_PLANNER,
    SHIPPED_STUDENT,
    SHIPPED_TEACHER,
    shipped_model,
)

HORIZON_COLUMNS = ("ade_1s", "fde_1s", "ade_2s", "fde_2s", "ade_4s", "fde_4s")


def _write_teacher_outputs(teacher_path: Path, cache: Path) -> None:
    from latentvla_ros.models.teacher.teacher_model import LatentActionTeacher
    from latentvla_ros.models.teacher.teacher_targets import write_teacher_targets

    teacher = LatentActionTeacher.from_pretrained(Path(teacher_path))
    for name, frames, written in write_teacher_targets(teacher, cache):
        print(f"teacher outputs {name:28s} {frames:6d} frames {'written' if written else '(current)'}")


def _cmd_train_student(args: argparse.Namespace) -> int:
    from latentvla_ros.models.student import StudentConfig
    from latentvla_ros.training.student_stage import StudentTrainingConfig, train_student

    # Both configs refuse a bad value before minutes of teacher answers.
    config = config_with(StudentConfig(), args.set)
    training = StudentTrainingConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        temperature=args.temperature,
        lam_weight=args.lam_weight,
        hard_label_weight=args.hard_label_weight,
        seed=args.seed,
    )
    _write_teacher_outputs(Path(args.teacher), Path(args.data))
    report = train_student(Path(args.data), Path(args.out), config, training, resume=args.resume)
    if report:
        _print_student_report(report)
    return 0


def _print_student_report(report: dict) -> None:
    print(f"{'predictor':18s} {'KL (nats/step)':>15s} {'top-1 agreement':>16s}")
    print(f"{'student':18s} {report['student_kl']:15.3f} {report['student_top1_agreement']:16.3f}")
    print(f"{'constant marginal':18s} {report['constant_kl']:15.3f} {report['constant_top1_agreement']:16.3f}")
    print(
        f"{report['frames']} frames; embedding cosine: actions {report['action_embedding_cosine']:.3f}, "
        f"visual {report['visual_embedding_cosine']:.3f}"
    )
    interval = report.get("student_top1_agreement_interval_95")
    if interval is not None:
        print(
            f"student top-1 agreement, 95 % block bootstrap interval ({report['interval_block_frames']}-frame "
            f"blocks of each log): {interval[0]:.3f} to {interval[1]:.3f}"
        )
    for band in report["student_top1_agreement_by_teacher_confidence"]:
        low, high = band["teacher_top_probability"]
        agreement = "-" if band["agreement"] is None else f"{band['agreement']:.3f}"
        print(f"teacher top probability {low:.1f}-{high:.1f}: {band['fraction']:6.1%} of steps, agreement {agreement}")


def _cmd_train_planner(args: argparse.Namespace) -> int:
    from latentvla_ros.models.planner import PlannerConfig
    from latentvla_ros.training.planner_stage import PlannerTrainingConfig, train_planner

    config = config_with(PlannerConfig(use_fusion=not args.no_fusion), args.set)
    training = PlannerTrainingConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        seed=args.seed,
        position_loss=args.position_loss,
        bev_weight=args.bev_weight,
        latent_dropout=args.latent_dropout,
    )
    student = None if args.no_fusion else Path(args.student)
    report = train_planner(Path(args.data), Path(args.out), student, config, training, resume=args.resume)
    if report:
        print("  ".join(f"{key} {report[key]:.3f}" for key in HORIZON_COLUMNS if key in report))
    return 0


def _cache_with_teacher(data: Path, scratch: str, teacher: Path | None, args: argparse.Namespace) -> Path:
    from latentvla_ros.cli import _cache_of

    cache = _cache_of(data, scratch, args)
    if teacher is not None:
        _write_teacher_outputs(teacher, cache)
    return cache


def _cmd_eval_student(args: argparse.Namespace) -> int:
    import numpy as np

    from latentvla_ros.evaluation.student_evaluation import evaluate_student, frame_agreement, teacher_marginal
    from latentvla_ros.models.student import LatentActionStudent
    from latentvla_ros.models.student_features import load_student_samples

    student, description = LatentActionStudent.load(Path(args.student))
    other = LatentActionStudent.load(Path(args.against))[0] if args.against else None
    with tempfile.TemporaryDirectory() as scratch:
        cache = _cache_with_teacher(Path(args.data), scratch, Path(args.teacher), args)
        samples = load_student_samples(cache, student.config, args.split)
        if other is not None:  # the same frames at the other student's input size
            other_samples = load_student_samples(cache, other.config, args.split)
    if "teacher_marginal" in description:
        marginal = np.asarray(description["teacher_marginal"])
    else:
        marginal = teacher_marginal(samples.probabilities)  # of this data: flatters the baseline
    against = None if other is None else frame_agreement(other, other_samples)
    report = evaluate_student(student, samples, marginal, against)
    _print_student_report(report)
    if other is not None:
        paired = report["agreement_minus_against"]
        paired["against"] = str(args.against)
        print(
            f"top-1 agreement minus --against's, same frames: {paired['difference']:+.3f} "
            f"(95 %: {_interval(paired['interval_95'], '+.3f')})"
        )
    _write_json(args.json, {**report, "student_version": description["version"], "data": str(args.data)})
    return 0


def _interval(interval, spec: str = ".2f") -> str:
    """``low to high``, or ``n/a`` under two blocks of data (nothing to resample)."""
    return "n/a" if interval is None else f"{interval[0]:{spec}} to {interval[1]:{spec}}"


def _write_json(path: str | None, payload: dict) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(payload, indent=2))
        print(f"json: {path}")


def _cmd_eval_planner(args: argparse.Namespace) -> int:
    from latentvla_ros.data.cache import log_entries
    from latentvla_ros.evaluation.block_bootstrap import BLOCK_FRAMES
    from latentvla_ros.evaluation.planner_evaluation import compare_planners
    from latentvla_ros.models.planner import FusionPlanner, PlannerConfig
    from latentvla_ros.models.planner_features import load_planner_samples
    from latentvla_ros.models.student import LatentActionStudent

    student, _ = LatentActionStudent.load(Path(args.student))
    with tempfile.TemporaryDirectory() as scratch:
        cache = _cache_with_teacher(Path(args.data), scratch, Path(args.teacher) if args.teacher else None, args)
        paths = [*args.planner, *args.no_fusion_planner]
        config = FusionPlanner.load(Path(paths[0]))[0].config if paths else PlannerConfig()
        samples = load_planner_samples(
            cache,
            config,
            keep_perturbed=args.keep_perturbed,
            student_size=student.config.image_size,
            student_history_frames=student.config.history_frames,
        )
        log_names = [entry["name"] for entry in log_entries(cache)]  # the order samples.log numbers
    rows, paired, by_log = compare_planners(
        samples, student, [Path(p) for p in args.planner], [Path(p) for p in args.no_fusion_planner], log_names
    )
    print(f"{'planner':30s} " + " ".join(f"{column:>13s}" for column in HORIZON_COLUMNS) + "   ADE@4s 95 %")
    for name, row in rows.items():
        cells = [
            f"{row[c]:6.2f}±{row[c + '_std']:<5.2f}" if row.get("seeds", 1) > 1 else f"{row[c]:13.2f}"
            for c in HORIZON_COLUMNS
        ]
        print(
            f"{name:30s} " + " ".join(f"{cell:>13s}" for cell in cells) + f"   {_interval(row['ade_4s_interval_95'])}"
        )
    kept = "all samples" if args.keep_perturbed else "samples without an injected perturbation in their 4 s"
    print(f"{len(samples)} held-out {kept} (metres; mean±std over seeds where a planner has several)")
    print(
        f"intervals: block bootstrap over {BLOCK_FRAMES}-frame blocks of each log; "
        "paired on the same samples, ADE@4s (m):"
    )
    for name, comparison in paired.items():
        print(f"  {name:40s} {comparison['difference']:+.3f}   95 %: {_interval(comparison['interval_95'], '+.3f')}")
    print("ADE@4s by log (m):")
    for log, row in by_log.items():
        scores = "  ".join(f"{planner} {value:.2f}" for planner, value in row.items() if planner != "samples")
        print(f"  {log} ({row['samples']} samples): {scores}")
    payload = {
        "data": str(args.data),
        "samples": len(samples),
        "keep_perturbed": args.keep_perturbed,
        "planners": rows,
        "paired_ade_4s": paired,
        "ade_4s_by_log": by_log,
    }
    _write_json(args.json, payload)
    return 0


def _cmd_eval_headroom(args: argparse.Namespace) -> int:
    from latentvla_ros.cli import _cache_of
    from latentvla_ros.evaluation.error_headroom import headroom, headroom_features
    from latentvla_ros.models.latent_action_loading import load_latent_action_model
    from latentvla_ros.models.planner import FusionPlanner
    from latentvla_ros.models.student import LatentActionStudent

    if Path(args.data).resolve() == Path(args.train_data).resolve():
        raise ValueError("--data must hold other logs than --train-data (the probes would score their own fit)")
    if args.train_samples < 1:
        raise ValueError(f"--train-samples must be >= 1, got {args.train_samples}")
    planner, _ = FusionPlanner.load(Path(args.planner))
    student, _ = LatentActionStudent.load(Path(args.student))
    lam, lam_description = load_latent_action_model(Path(args.lam))
    sha = lam_description.get("sha256", "")
    train, train_error, notes = headroom_features(
        Path(args.train_data), "train", planner, student, lam, sha, args.train_samples
    )
    with tempfile.TemporaryDirectory() as scratch:
        cache = _cache_of(Path(args.data), scratch, args)
        test, test_error, test_notes = headroom_features(cache, None, planner, student, lam, sha, None)
    for note in [f"--train-data: {note}" for note in notes] + [f"--data: {note}" for note in test_notes]:
        print(note)
    shared = [name for name in test if name in train]
    report = headroom({n: train[n] for n in shared}, train_error, {n: test[n] for n in shared}, test_error)
    print(
        f"planner {args.planner}: FDE@4s {report['fde_4s']:.3f} m on "
        f"{report['samples']} held-out samples; probes fit on {len(train_error)} training samples"
    )
    print(
        f"{'features (with the control)':30s} {'count':>6s} {'R2 ahead':>9s} {'R2 left':>8s} {'FDE@4s corrected':>17s}"
    )
    for name, row in report["sets"].items():
        print(
            f"{name:30s} {row['features']:6d} {row['r2_ahead']:9.3f} {row['r2_left']:8.3f} "
            f"{row['fde_4s_corrected']:17.3f}"
        )
    report.update({"planner": str(args.planner), "data": str(args.data), "train_data": str(args.train_data)})
    report["train_samples"] = len(train_error)
    _write_json(args.json, report)
    return 0


def add_parsers(train_models, eval_models) -> None:
    student = train_models.add_parser("student", help="distil the teacher into the student (KL + embeddings)")
    student.add_argument("--data", required=True, help="dataset cache (teacher outputs are written into it first)")
    student.add_argument("--out", required=True, help="output directory (student, metrics, report)")
    student.add_argument("--teacher", default=str(shipped_model(SHIPPED_TEACHER)), help="teacher directory")
    student.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    student.add_argument("--steps", type=int, default=10000)
    student.add_argument("--batch-size", type=int, default=32)
    student.add_argument("--temperature", type=float, default=1.0, help="distillation temperature")
    student.add_argument("--lam-weight", type=float, default=0.1, help="cross-entropy on the LAM tokens; 0: off")
    student.add_argument(
        "--hard-label-weight", type=float, default=0.0, help="cross-entropy on the teacher's top-1 code; 0: off"
    )
    student.add_argument("--seed", type=int, default=0)
    add_config_overrides(
        student, "override a StudentConfig field, e.g. width=192 (repeatable; the teacher sets horizon and sizes)"
    )
    student.set_defaults(handler=_cmd_train_student)

    planner = train_models.add_parser("planner", help="the fusion planner (or --no-fusion, the ablation)")
    planner.add_argument("--data", required=True, help="dataset cache (latentvla dataset ... --out)")
    planner.add_argument("--out", required=True, help="output directory (planner, metrics, report)")
    planner.add_argument(
        "--student", default=str(shipped_model(SHIPPED_STUDENT)), help="student whose latents it fuses"
    )
    planner.add_argument("--no-fusion", action="store_true", help="the ablation: no latent-action fusion")
    planner.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    planner.add_argument("--steps", type=int, default=8000)
    planner.add_argument("--batch-size", type=int, default=32)
    planner.add_argument("--seed", type=int, default=0)
    planner.add_argument(
        "--position-loss", choices=("l1", "euclidean"), default="l1", help="per-pose position error: L1 or the distance"
    )
    planner.add_argument(
        "--bev-weight", type=float, default=0.5, help="weight of the auxiliary BEV loss (logs with a BEV raster)"
    )
    planner.add_argument(
        "--latent-dropout",
        type=float,
        default=0.5,
        help="share of the fusion planner's training samples planned without it (0: off; --no-fusion records 0)",
    )
    add_config_overrides(
        planner, "override a PlannerConfig field, e.g. decoder_layers=3 (repeatable; the student sets the fusion sizes)"
    )
    planner.set_defaults(handler=_cmd_train_planner)

    eval_student = eval_models.add_parser("student", help="student-teacher KL and top-1 agreement on held-out data")
    eval_student.add_argument("--data", required=True, help="a bag, a directory of bags, or a dataset cache")
    eval_student.add_argument("--student", default=str(shipped_model(SHIPPED_STUDENT)))
    eval_student.add_argument("--teacher", default=str(shipped_model(SHIPPED_TEACHER)))
    eval_student.add_argument("--json", help="write the report here")
    eval_student.add_argument(
        "--against", help="another student: the paired difference of top-1 agreement on the same frames"
    )
    eval_student.add_argument(
        "--split", choices=("train", "val"), help="only this split of a cache (default: every log)"
    )
    add_bag_topic_options(eval_student)
    eval_student.set_defaults(handler=_cmd_eval_student)

    eval_planner = eval_models.add_parser("planner", help="ADE/FDE at 1, 2, 4 s of every planner, one table")
    eval_planner.add_argument("--data", required=True, help="a bag, a directory of bags, or a dataset cache")
    eval_planner.add_argument(
        "--planner", nargs="+", default=[str(shipped_model(SHIPPED_PLANNER))], help="fusion planner(s), e.g. seeds"
    )
    eval_planner.add_argument(
        "--no-fusion-planner", nargs="*", default=[str(shipped_model(SHIPPED_NO_FUSION_PLANNER))],
        help="no-fusion ablation(s)",
    )  # fmt: skip
    eval_planner.add_argument("--student", default=str(shipped_model(SHIPPED_STUDENT)))
    eval_planner.add_argument(
        "--teacher", default=str(shipped_model(SHIPPED_TEACHER)), help="for the undistilled row; '' to skip it"
    )
    eval_planner.add_argument(
        "--keep-perturbed",
        action="store_true",
        help="also score samples whose next 4 s hold an injected perturbation (the log then shows the "
        "disturbance, not the driver's plan; left out by default, as in training)",
    )
    eval_planner.add_argument("--json", help="write the report here")
    add_bag_topic_options(eval_planner)
    eval_planner.set_defaults(handler=_cmd_eval_planner)

    eval_headroom = eval_models.add_parser(
        "headroom",
        help="how much of a planner's 4 s error the latent actions, the scene or the true future tokens "
        "could explain (held-out probes)",
    )
    eval_headroom.add_argument("--data", required=True, help="held-out logs: a bag, a directory of bags, or a cache")
    eval_headroom.add_argument("--train-data", required=True, help="dataset cache whose training split fits the probes")
    eval_headroom.add_argument(
        "--planner", default=str(shipped_model(SHIPPED_NO_FUSION_PLANNER)), help="whose error (default: the ablation)"
    )
    eval_headroom.add_argument("--student", default=str(shipped_model(SHIPPED_STUDENT)))
    eval_headroom.add_argument(
        "--lam",
        default=str(shipped_model(SHIPPED_LAM)),
        help="LAM of the oracle's future tokens (a cache's labels when this LAM made them)",
    )
    eval_headroom.add_argument(
        "--train-samples", type=int, default=16000, help="a fixed random subset of the training split's samples"
    )
    eval_headroom.add_argument("--json", help="write the report here")
    add_bag_topic_options(eval_headroom)
    eval_headroom.set_defaults(handler=_cmd_eval_headroom)
