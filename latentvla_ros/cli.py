"""The ``latentvla`` command line: one subcommand per job (the student's and planner's in ``cli_planning``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from latentvla_ros import __version__
from latentvla_ros.cli_bag_options import add_bag_topic_options, dataset_config
from latentvla_ros.cli_config_overrides import add_config_overrides, config_with
from latentvla_ros.cli_evaluation import add_parsers as add_evaluation_parsers
from latentvla_ros.cli_planning import add_parsers as add_planning_parsers
from latentvla_ros.core.validation import InputError
from latentvla_ros.data.errors import BagError, GraphError
from latentvla_ros.environment import SHIPPED_LAM, SHIPPED_TEACHER, ensure_ament_prefix, shipped_model


def _cmd_info(_args: argparse.Namespace) -> int:
    """Print versions and whether the ROS 2 side (rclpy, our interfaces) imports."""
    print(f"latentvla_ros {__version__}")
    try:
        import rclpy  # noqa: F401

        from latentvla_ros.msg import LatentActions, PlannedTrajectory  # noqa: F401
    except ImportError as error:
        print(f"ROS 2 interfaces: not importable ({error})")
        return 1
    print("ROS 2 interfaces: latentvla_ros/msg/LatentActions, latentvla_ros/msg/PlannedTrajectory")
    return 0


def _cmd_record(args: argparse.Namespace) -> int:
    from latentvla_ros.data.recording import record

    logs = record(
        args.scenario,
        args.minutes,
        args.seed,
        Path(args.out),
        traffic_density=args.traffic_density,
        varied=not args.plain,
    )
    print(
        f"{'bag':32s} {'simulated':>10s} {'wall':>8s} {'x real time':>11s} {'episodes':>8s} {'at-fault':>8s}"
        f" {'perturbations':>13s}"
    )
    for log in logs:
        summary = log.summary
        print(
            f"{log.path!s:32s} {log.simulated_s:9.0f}s {log.wall_s:7.1f}s {log.simulated_s / log.wall_s:11.1f}"
            f" {summary.episodes:8d} {summary.at_fault_collisions:8d} {log.perturbations:13d}"
        )
    return 0


def _cmd_dataset(args: argparse.Namespace) -> int:
    from latentvla_ros.data.dataset_builder import build_dataset

    config = dataset_config(args)
    index = build_dataset(Path(args.bags), Path(args.out), config, Path(args.val) if args.val else None, args.jobs)
    for log in index["logs"]:
        print(f"{log['name']:32s} {log['split']:5s} {log['samples']:6d} samples")
    return 0


def _cmd_preview(args: argparse.Namespace) -> int:
    from latentvla_ros.data.dataset_builder import find_bags
    from latentvla_ros.data.preview import render_bag_preview, render_drive_overview

    out_dir = Path(args.out)
    config = dataset_config(args)
    for bag in find_bags(Path(args.bag)):
        print(render_bag_preview(bag, out_dir / f"{bag.name}_preview.png", args.frames, config))
        print(render_drive_overview(bag, out_dir / f"{bag.name}_overview.png", args.frames, config))
    return 0


def _launch_file(name: str) -> Path:
    """A path, or a file name in this package's installed launch/ directory."""
    path = Path(name)
    if path.is_file():
        return path
    from latentvla_ros.ros.launch_yaml import package_prefix

    installed = package_prefix("latentvla_ros") / "share" / "latentvla_ros" / "launch" / name
    if installed.is_file():
        return installed
    raise FileNotFoundError(f"launch file '{name}' not found (as a path or in share/latentvla_ros/launch)")


def _cmd_launch(args: argparse.Namespace) -> int:
    from latentvla_ros.ros.launch_yaml import parse_overrides, plan_launch, run_launch

    return run_launch(plan_launch(_launch_file(args.file), parse_overrides(args.arguments)))


def _cmd_demo(args: argparse.Namespace) -> int:
    """The ROS 2 graph driving in the simulator, recorded, then summarized and pictured."""
    import shutil

    from latentvla_ros.data.drive_report import drive_report, render_drive, write_report_json
    from latentvla_ros.data.preview import render_bag_preview
    from latentvla_ros.ros.launch_yaml import plan_launch, run_launch

    out_dir = Path(args.out)
    bag = out_dir / "bag"
    shutil.rmtree(bag, ignore_errors=True)  # the demo's own output from an earlier run
    out_dir.mkdir(parents=True, exist_ok=True)
    overrides = {
        "scenario": args.scenario,
        "seed": str(args.seed),
        "duration_s": str(args.duration),
        "bag_path": str(bag),
    }
    if args.planner == "latentvla":
        launch_file, graph = "sim.launch.yaml", "simulator + student + planner (shipped models) + recorder"
    else:
        launch_file, graph = "demo.launch.yaml", "simulator + privileged expert planner + recorder"
    print(f"demo: {args.scenario}, {args.duration:.0f} simulated seconds, {graph}")
    status = run_launch(plan_launch(_launch_file(launch_file), overrides))
    if status != 0 or not bag.is_dir():
        print("demo: the ROS graph did not finish cleanly; see the log above", file=sys.stderr)
        return status or 1
    report = drive_report(bag)
    summary = report.summary()
    completion = summary["route_completion_mean"]
    print(
        f"drove {summary['simulated_s']:.0f} s in {summary['episodes']} episode(s): route completion "
        f"{'n/a' if completion is None else f'{100 * completion:.0f} %'}, collisions {summary['collisions']} "
        f"({summary['at_fault_collisions']} at fault), off-road steps {summary['off_road_steps']}"
    )
    print(f"plans by mode: {summary['plans_by_mode']}")
    if summary["pipeline_latency_ms_p50"] is not None:
        print(
            f"pipeline latency on the sim clock (camera stamp -> trajectory): p50 "
            f"{summary['pipeline_latency_ms_p50']:.1f} ms, p99 {summary['pipeline_latency_ms_p99']:.1f} ms "
            f"(lock-stepped: simulated time waits for the plan)"
        )
    for name in ("student", "planner"):
        if f"{name}_processing_ms_p50" in summary:
            print(
                f"{name} compute per frame (wall clock): p50 {summary[f'{name}_processing_ms_p50']:.1f} ms, "
                f"p99 {summary[f'{name}_processing_ms_p99']:.1f} ms"
            )
    print(f"bag:      {bag}")
    print(f"report:   {write_report_json(report, out_dir / 'demo_report.json')}")
    print(f"drive:    {render_drive(bag, out_dir / 'demo_drive.png')}")
    print(f"preview:  {render_bag_preview(bag, out_dir / 'demo_preview.png')}")
    return 0


def _cmd_train_lam(args: argparse.Namespace) -> int:
    from latentvla_ros.evaluation.latent_action_evaluation import CodebookCollapseError
    from latentvla_ros.models.latent_action import LatentActionConfig
    from latentvla_ros.training.lam_stages import LamTrainingConfig, train_lam

    training = LamTrainingConfig(
        stage1_steps=args.stage1_steps,
        stage2_steps=args.stage2_steps,
        batch_size=args.batch_size,
        evaluate_every=args.evaluate_every,
        collapse_warmup_steps=args.collapse_warmup_steps,
        seed=args.seed,
        cosine_decay=args.cosine_decay,
    )
    try:
        config = config_with(LatentActionConfig(), args.set)
    except ValueError as error:
        print(f"latentvla train lam: {error}", file=sys.stderr)
        return 2
    try:
        report = train_lam(
            Path(args.data),
            Path(args.out),
            config,
            training,
            resume=args.resume,
            stage1_from=Path(args.stage1_from) if args.stage1_from else None,
        )
    except CodebookCollapseError as error:
        print(f"latentvla train: stopped: {error}", file=sys.stderr)
        return 2
    if report:
        _print_lam_report(report)
    return 0


LAM_REPORT_ROWS = (
    ("recon_improvement_vs_copy", "next-frame MSE reduction vs copying frame t"),
    ("action_gain_vs_constant", "ego stage: MSE reduction vs the best constant code"),
    ("ego_codes_used", "ego codes used (of 16)"),
    ("ego_perplexity", "ego codebook perplexity"),
    ("env_codes_used", "environment codes used (of 16)"),
    ("env_perplexity", "environment codebook perplexity"),
    ("ego_ami_maneuver", "AMI ego tokens ~ maneuver bins"),
    ("env_ami_maneuver", "AMI env tokens ~ maneuver bins"),
    ("env_ami_agents", "AMI env tokens ~ other agents' motion"),
    ("ego_ami_agents", "AMI ego tokens ~ other agents' motion"),
    ("probe_r2_yaw_rate", "probe R2 ego tokens -> yaw rate"),
    ("probe_r2_speed_change", "probe R2 ego tokens -> speed change"),
    ("probe_r2_speed", "probe R2 ego tokens -> speed (a state)"),
)


def _print_lam_report(report: dict) -> None:
    print(f"{'metric':28s} {'value':>10s}  meaning")
    for key, meaning in LAM_REPORT_ROWS:
        value = report.get(key)
        if value is None:
            text = "n/a"
        elif isinstance(value, float):
            text = f"{value:.4f}"
        else:
            text = str(value)
        print(f"{key:28s} {text:>10s}  {meaning}")
    for stage in ("stage1_environment", "stage2_ego"):
        if stage in report:
            numbers = report[stage]
            print(
                f"{stage}: MSE inferred {numbers['reconstruction_mse']:.6f}, best constant "
                f"{numbers['best_constant_mse']:.6f} (code {numbers['best_constant_code']}), shuffled "
                f"{numbers['shuffled_mse']:.6f}; gain vs constant {numbers['action_gain_vs_constant']:+.3f}, "
                f"shuffled {numbers['shuffled_gain_vs_constant']:+.3f}"
            )


def _cache_of(data: Path, scratch: str, args: argparse.Namespace | None = None) -> Path:
    """A dataset cache as given, or one built from bags into ``scratch`` (with the command's
    topic and frame options)."""
    from latentvla_ros.data.cache import read_index

    if (data / "dataset.json").is_file():
        read_index(data)  # a clear error for an outdated cache
        return data
    from latentvla_ros.data.dataset_builder import build_dataset

    build_dataset(data, Path(scratch) / "cache", dataset_config(args) if args is not None else None)
    return Path(scratch) / "cache"


def _cmd_eval_lam(args: argparse.Namespace) -> int:
    import json
    import tempfile

    from latentvla_ros.evaluation.latent_action_evaluation import code_glosses, evaluate_lam, write_code_grid
    from latentvla_ros.models.latent_action_features import load_windows
    from latentvla_ros.models.latent_action_loading import load_latent_action_model

    model, description = load_latent_action_model(Path(args.model))
    with tempfile.TemporaryDirectory() as scratch:
        windows = load_windows(_cache_of(Path(args.data), scratch, args), model.config)
        report, predictions = evaluate_lam(model, windows, full=True)
    # Glossed on the data evaluated here (held-out when the data is), not on training logs.
    glosses = code_glosses(predictions.ego_tokens, windows.acceleration, windows.yaw_rate, model.config.codebook_size)
    _print_lam_report(report)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        payload = {**report, "model_version": description["version"], "glosses_source": str(args.data)}
        Path(args.json).write_text(json.dumps({**payload, "glosses": glosses}, indent=2))
        png = Path(args.json).with_suffix(".png")
        print(f"json: {args.json}\npng:  {write_code_grid(png, windows, predictions.ego_tokens, glosses)}")
    collapsed = [name for name, key in (("environment", "env"), ("ego", "ego")) if report[f"{key}_collapsed"]]
    if collapsed:
        print(
            f"latentvla eval: FAIL: collapsed codebook(s): {', '.join(collapsed)} (perplexity < 2 on this data)",
            file=sys.stderr,
        )
        return 1
    return 0


def _cmd_label(args: argparse.Namespace) -> int:
    from latentvla_ros.models.latent_action_labelling import label_cache
    from latentvla_ros.models.latent_action_loading import load_latent_action_model

    model, description = load_latent_action_model(Path(args.model))
    print(f"{'log':32s} {'steps':>7s} {'targets':>8s}")
    for name, labels in label_cache(model, description, Path(args.data)):
        print(f"{name:32s} {len(labels.ego_tokens):7d} {len(labels.future_frames):8d}")
    return 0


def _cmd_train_teacher(args: argparse.Namespace) -> int:
    from latentvla_ros.training.teacher_stage import TeacherTrainingConfig, train_teacher

    training = TeacherTrainingConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        evaluate_every=args.evaluate_every,
        lora_rank=args.lora_rank,
    )
    model_path = Path(args.model_path) if args.model_path else None
    report = train_teacher(
        Path(args.data), Path(args.out), training=training, model_path=model_path, resume=args.resume
    )
    if report:
        _print_teacher_report(report)
    return 0


def _print_teacher_report(report: dict) -> None:
    print(f"{'predictor':16s} {'top-1':>7s} {'step 1':>7s} {'step 6':>7s} {'step 12':>7s}")
    for name in ("teacher", "majority", "repeat_current", "blank_image"):
        if f"{name}_top1" in report:
            steps = report[f"{name}_top1_per_step"]
            print(f"{name:16s} {report[f'{name}_top1']:7.3f} {steps[0]:7.3f} {steps[5]:7.3f} {steps[-1]:7.3f}")
    print(f"teacher NLL {report['teacher_nll']:.3f} nats/step on {report['frames']} held-out frames", end="")
    if "gain_over_best_trivial" in report:
        print(
            f"; gain over the best trivial baseline {100 * report['gain_over_best_trivial']:+.1f} points,"
            f" camera contribution {100 * report['camera_contribution']:+.1f} points"
        )
    else:
        print()


def _cmd_eval_teacher(args: argparse.Namespace) -> int:
    import json
    import tempfile

    from latentvla_ros.evaluation.teacher_evaluation import evaluate_teacher, majority_token
    from latentvla_ros.models.teacher.teacher_features import load_teacher_samples
    from latentvla_ros.models.teacher.teacher_model import LatentActionTeacher

    teacher = LatentActionTeacher.from_pretrained(Path(args.model))
    with tempfile.TemporaryDirectory() as scratch:
        cache = _cache_of(Path(args.data), scratch, args)
        if cache != Path(args.data):  # bags: label them with the shipped latent action model
            from latentvla_ros.models.latent_action_labelling import label_cache
            from latentvla_ros.models.latent_action_loading import load_latent_action_model

            lam, description = load_latent_action_model(Path(args.lam))
            for _ in label_cache(lam, description, cache):
                pass
        samples = load_teacher_samples(cache, teacher.config)
    majority = teacher.description.get("majority_token", majority_token(samples.targets))
    report = evaluate_teacher(teacher, samples, int(majority), limit=args.limit)
    _print_teacher_report(report)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({**report, "model_version": teacher.version}, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:

    parser = argparse.ArgumentParser(prog="latentvla", description=__doc__)
    parser.add_argument("--version", action="version", version=f"latentvla_ros {__version__}")
    subcommands = parser.add_subparsers(dest="command", required=True)
    info = subcommands.add_parser("info", help="versions and interface check")
    info.set_defaults(handler=_cmd_info)

    record = subcommands.add_parser("record", help="drive the expert in simulated scenarios and write rosbag2 logs")
    record.add_argument(
        "--scenario", default="all", help="all, or a comma list of highway,merge,roundabout,intersection"
    )
    record.add_argument(
        "--minutes", type=float, default=2.0, help="simulated minutes in total, shared by the scenarios"
    )
    record.add_argument("--seed", type=int, default=0, help="fixes scenarios and traffic")
    record.add_argument("--traffic-density", type=float, default=1.0, help="scales each scenario's traffic")
    record.add_argument(
        "--plain",
        action="store_true",
        help="the steady expert only: no perturbation episodes, no spread of cruise speeds and traffic densities",
    )
    record.add_argument("--out", required=True, help="output directory (one bag per scenario inside)")
    record.set_defaults(handler=_cmd_record)

    dataset = subcommands.add_parser("dataset", help="build training samples from rosbag2 logs")
    dataset.add_argument("bags", help="a bag, or a directory searched for bags")
    dataset.add_argument("--out", required=True, help="cache directory")
    add_bag_topic_options(dataset)
    dataset.add_argument("--val", help="bags to hold out as the val split (default: a hash of each log name)")
    dataset.add_argument("--jobs", type=int, default=1, help="logs read at a time, one process each (default 1)")
    dataset.set_defaults(handler=_cmd_dataset)

    preview = subcommands.add_parser("preview", help="PNG previews of bags (frames + trajectory, BEV, driven path)")
    preview.add_argument("bag", help="a bag, or a directory searched for bags")
    preview.add_argument("--out", default="out/preview", help="output directory for the PNGs")
    preview.add_argument("--frames", type=int, default=4)
    add_bag_topic_options(preview)
    preview.set_defaults(handler=_cmd_preview)

    train = subcommands.add_parser("train", help="train a model from a dataset cache")
    train_models = train.add_subparsers(dest="model", required=True)
    train_lam = train_models.add_parser("lam", help="the latent action model (stage 1 environment, stage 2 ego)")
    train_lam.add_argument("--data", required=True, help="dataset cache (latentvla dataset ... --out)")
    train_lam.add_argument("--out", required=True, help="output directory (weights, metrics, report)")
    train_lam.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    train_lam.add_argument("--stage1-steps", type=int, default=1200)
    train_lam.add_argument("--stage2-steps", type=int, default=2000)
    train_lam.add_argument("--batch-size", type=int, default=64)
    train_lam.add_argument("--evaluate-every", type=int, default=200, help="held-out progress check every N steps")
    train_lam.add_argument("--seed", type=int, default=0, help="initialization and batch order of both stages")
    train_lam.add_argument(
        "--cosine-decay", action="store_true", help="decay each stage's learning rate to 0 at its last step"
    )
    train_lam.add_argument(
        "--collapse-warmup-steps",
        type=int,
        default=400,
        help="from this step of a stage on, a held-out codebook perplexity below 2 stops training",
    )
    add_config_overrides(
        train_lam, "override a LatentActionConfig field, e.g. ego_warp_geometry=ground_plane (repeatable)"
    )
    train_lam.add_argument("--stage1-from", help="reuse this trained model's stage 1 (frozen) and train stage 2 only")
    train_lam.set_defaults(handler=_cmd_train_lam)

    train_teacher = train_models.add_parser(
        "teacher", help="the teacher VLM (Qwen2.5-VL + 16 action tokens) on a labelled cache"
    )
    train_teacher.add_argument("--data", required=True, help="dataset cache labelled by `latentvla label`")
    train_teacher.add_argument("--out", required=True, help="output directory (teacher, metrics, report)")
    train_teacher.add_argument(
        "--model-path", help="a local Qwen2.5-VL checkpoint directory (default: the small teacher from scratch)"
    )
    train_teacher.add_argument("--lora-rank", type=int, default=0, help="LoRA rank (peft); 0: full fine-tuning")
    train_teacher.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    train_teacher.add_argument("--steps", type=int, default=3000)
    train_teacher.add_argument("--batch-size", type=int, default=16)
    train_teacher.add_argument("--learning-rate", type=float, default=5e-4)
    train_teacher.add_argument("--evaluate-every", type=int, default=200)
    train_teacher.set_defaults(handler=_cmd_train_teacher)

    evaluate = subcommands.add_parser("eval", help="evaluate a model")
    eval_models = evaluate.add_subparsers(dest="model_kind", required=True)
    eval_lam = eval_models.add_parser(
        "lam", help="reconstruction vs copy / best constant / shuffled, code use, AMI, probes, code grid"
    )
    eval_lam.add_argument("--data", required=True, help="a bag, a directory of bags, or a dataset cache")
    eval_lam.add_argument("--model", default=str(shipped_model(SHIPPED_LAM)), help="model file stem (default: shipped)")
    eval_lam.add_argument("--json", help="write the report here (and the code grid PNG beside it)")
    add_bag_topic_options(eval_lam)
    eval_lam.set_defaults(handler=_cmd_eval_lam)

    eval_teacher = eval_models.add_parser(
        "teacher", help="top-1 accuracy and NLL of the 12 future tokens beside majority / repeat / blank-image"
    )
    eval_teacher.add_argument("--data", required=True, help="a labelled dataset cache, or bags (labelled on the fly)")
    eval_teacher.add_argument(
        "--model", default=str(shipped_model(SHIPPED_TEACHER)), help="teacher directory (default: shipped)"
    )
    eval_teacher.add_argument("--lam", default=str(shipped_model(SHIPPED_LAM)), help="LAM that labels bags")
    eval_teacher.add_argument("--limit", type=int, help="evaluate this many frames, evenly spread")
    eval_teacher.add_argument("--json", help="write the report here")
    add_bag_topic_options(eval_teacher)
    eval_teacher.set_defaults(handler=_cmd_eval_teacher)
    add_planning_parsers(train_models, eval_models)  # student and planner

    label = subcommands.add_parser(
        "label", help="write latent-action tokens and 12-token future ego targets into a dataset cache"
    )
    label.add_argument("--data", required=True, help="dataset cache (latentvla dataset ... --out)")
    label.add_argument("--model", default=str(shipped_model(SHIPPED_LAM)), help="LAM file stem (default: shipped)")
    label.set_defaults(handler=_cmd_label)

    launch = subcommands.add_parser(
        "launch", help="run a YAML launch file without launch_ros (ros2 launch runs it too)"
    )
    launch.add_argument("file", help="a path, or a launch file of this package (e.g. demo.launch.yaml)")
    launch.add_argument("arguments", nargs="*", help="name:=value launch arguments")
    launch.set_defaults(handler=_cmd_launch)

    demo = subcommands.add_parser("demo", help="the ROS 2 graph driving in the simulator; writes a bag and PNGs")
    demo.add_argument("--scenario", default="roundabout")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--duration", type=float, default=60.0, help="simulated seconds")
    demo.add_argument("--out", default="out/demo")
    demo.add_argument(
        "--planner", choices=("latentvla", "expert"), default="latentvla",
        help="latentvla: the student + fusion planner with the shipped models; expert: the privileged expert",
    )  # fmt: skip
    demo.set_defaults(handler=_cmd_demo)
    add_evaluation_parsers(subcommands)
    return parser


def main(argv: list[str] | None = None) -> int:
    ensure_ament_prefix()
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    # LaunchError, CheckpointError and FrameSizeError are ValueErrors too.
    except (BagError, GraphError, InputError, ValueError, FileNotFoundError) as error:
        # One clear line, not a traceback: the input was wrong, not the program.
        print(f"latentvla {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
