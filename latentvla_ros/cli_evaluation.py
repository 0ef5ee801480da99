"""``latentvla replay`` and ``latentvla closed-loop``: planners judged through the live graph.

Both start the planner graph from this package's launch files (the same graph
``ros2 launch`` starts), drive it on sim time, record what it answers to an MCAP bag and
score every plan (``evaluation/plan_scoring.py``); both write ``report.json``,
``report.md`` and PNGs into one output folder.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
from pathlib import Path

from latentvla_ros.cli_bag_options import add_bag_topic_options
from latentvla_ros.data.errors import GraphError
from latentvla_ros.environment import SHIPPED_NO_FUSION_PLANNER, SHIPPED_PLANNER

# Planner name -> (launch file, its arguments, needs the camera).
PLANNERS = {
    "latentvla": ("latentvla.launch.yaml", {"planner_model": SHIPPED_PLANNER}, True),
    "no_fusion": ("latentvla.launch.yaml", {"planner_model": SHIPPED_NO_FUSION_PLANNER}, True),
    "constant_velocity": ("baseline.launch.yaml", {"planner": "constant_velocity"}, False),
}
IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")


def _check_replay_topics(bag: Path, args: argparse.Namespace, needs_camera: bool) -> tuple[str | None, str]:
    """The camera topic (None: none in the bag) and its transport; one clear error otherwise."""
    from latentvla_ros.data.bag_io import BagError, bag_topics, camera_topic_in, require_topic_types

    available = bag_topics(bag)
    listing = ", ".join(f"{t} ({kind})" for t, (kind, _) in sorted(available.items()))
    if args.odometry_topic not in available:
        raise BagError(f"{bag}: no odometry topic {args.odometry_topic} (--odometry-topic); the bag has: {listing}")
    camera_topic = camera_topic_in(available, args.camera_topic)
    require_topic_types(bag, available, {args.odometry_topic: ("nav_msgs/msg/Odometry",), camera_topic: IMAGE_TYPES})
    if camera_topic not in available:
        if needs_camera:
            raise BagError(
                f"{bag}: no camera topic {args.camera_topic} (--camera-topic): planner '{args.planner}' needs one; "
                f"an odometry-only bag replays with --planner constant_velocity. The bag has: {listing}"
            )
        return None, "raw"
    return camera_topic, "compressed" if available[camera_topic][0].endswith("CompressedImage") else "raw"


def _cmd_replay(args: argparse.Namespace) -> int:
    import rclpy
    from tqdm import tqdm

    from latentvla_ros.cli import _launch_file
    from latentvla_ros.data.drive_report import render_drive
    from latentvla_ros.evaluation.evaluation_report import plot_scores, write_report
    from latentvla_ros.evaluation.plan_scoring import ScoringTopics, score_plans
    from latentvla_ros.planning.latentvla_planner import LATENT_STEP_S
    from latentvla_ros.ros.bag_replay import PlayedTopic, replay_bag
    from latentvla_ros.ros.launch_yaml import plan_launch, start_nodes, stop_nodes

    bag, out_dir = Path(args.bag), Path(args.out)
    launch_file, launch_arguments, needs_camera = PLANNERS[args.planner]
    camera_topic, transport = _check_replay_topics(bag, args, needs_camera)
    output_bag = out_dir / "bag"
    shutil.rmtree(output_bag, ignore_errors=True)  # this command's own output from an earlier run
    out_dir.mkdir(parents=True, exist_ok=True)
    overrides = {
        **launch_arguments,
        "use_sim_time": "true",
        "odometry_topic": args.odometry_topic,
        "odometry_frame": args.odometry_frame,
        "base_frame": args.base_frame,
    }
    if needs_camera and args.model_dir:
        overrides["model_dir"] = args.model_dir
    if needs_camera and args.rate is None:
        # Lock-stepped, time is the player's: it holds the clock while the graph thinks, so the
        # watchdog's 0.3 s of node time would measure the player, not stale inputs.
        overrides["stale_timeout_s"] = "5.0"
        # The player waits for every frame anyway: a best-effort frame lost on a loaded
        # machine would only leave a plan unanswered.
        overrides["camera_qos_reliability"] = "reliable"
    if needs_camera:
        # Student and planner both listen to camera and odometry.
        played = [
            PlayedTopic(camera_topic, camera_topic, True, listeners=2),
            PlayedTopic(args.odometry_topic, args.odometry_topic, False, listeners=2),
        ]
        overrides.update({"image_topic": camera_topic, "image_transport": transport})
    else:
        played = [PlayedTopic(args.odometry_topic, args.odometry_topic, True)]
    plan = plan_launch(_launch_file(launch_file), overrides)
    pace = "lock-stepped (as fast as the graph answers)" if args.rate is None else f"at {args.rate:g}x real time"
    if needs_camera and args.rate is None and args.plan_every:
        pace += f", planning every {args.plan_every:g} s"
    print(f"replay: {bag} -> {args.planner} ({', '.join(n.name for n in plan.nodes)}), {pace}")
    context = rclpy.context.Context()
    rclpy.init(context=context)
    start_nodes(plan)
    try:
        with tqdm(desc="replay", unit=" s of log", file=sys.stderr, leave=False) as bar:

            def progress(log_ns: int) -> None:
                if log_ns * 1e-9 - bar.n >= 1.0:
                    bar.update(int(log_ns * 1e-9 - bar.n))

            result = replay_bag(
                context,
                bag,
                played,
                output_bag,
                lockstep=args.rate is None,
                rate=args.rate or 1.0,
                answer_timeout_s=args.answer_timeout,
                plan_every_s=args.plan_every if needs_camera and args.rate is None else None,
                history_s=LATENT_STEP_S if needs_camera else 0.0,
                internal_topics=("/latentvla/student/latent_actions",) if needs_camera else (),
                progress=progress,
            )
    finally:
        stop_nodes(plan)
        rclpy.shutdown(context=context)
    scores = score_plans(
        output_bag,
        ScoringTopics(odometry=args.odometry_topic, odometry_frame=args.odometry_frame, base_frame=args.base_frame),
    )
    summary = scores.summary()
    rows = {args.planner: summary}
    details = {
        "command": "latentvla replay " + " ".join(shlex.quote(a) for a in sys.argv[2:])
        if sys.argv[1:2] == ["replay"]
        else "",
        "bag": str(bag),
        "output_bag": str(output_bag),
        "pace": pace,
        "log_s": round(result.log_s, 2),
        "wall_s": round(result.wall_s, 2),
        "real_time_factor": round(result.real_time_factor, 2),
        "messages_played": result.played,
        "frames_awaited": result.awaited,
        "frames_missed": result.missed,
        "frames_missed_at_s": result.missed_at_s,
        "recorded": result.recorded,
        "per_plan": scores.rows,
    }
    json_path, md_path = write_report(out_dir, f"Replay of {bag.name}: {args.planner}", rows, details)
    print(
        f"replayed {result.log_s:.1f} s of log in {result.wall_s:.1f} s wall "
        f"({result.real_time_factor:.1f}x real time); "
        f"{summary['plans']} plans scored, {summary['unscored']} without a full 4 s future"
        + (
            f", {result.missed} of {result.awaited} frames unanswered "
            f"(at {', '.join(f'{t:g}' for t in result.missed_at_s[:5])} s of log)"
            if result.missed
            else ""
        )
    )
    print(md_path.read_text().split("\n", 2)[2].rstrip())
    worst = sorted(scores.rows, key=lambda row: -row["fde_4s"])[:3]
    drive_png = render_drive(
        output_bag,
        out_dir / "replay_drive.png",
        frame_count=3,
        odometry_topic=args.odometry_topic,
        camera_topic=camera_topic or "",
        frames=(args.odometry_frame, args.base_frame),
        frame_stamps=sorted(row["stamp_ns"] for row in worst),
        title=f"replay of {bag.name} with {args.planner}: driven (black), planned (green); below: worst FDE@4s moments",
    )
    scores_png = plot_scores(rows, out_dir / "replay_scores.png")
    print(
        f"bag:      {output_bag}\nreport:   {json_path}, {md_path}\npictures: {drive_png}"
        + (f", {scores_png}" if scores_png else "")
    )
    return 0


def add_parsers(subcommands) -> None:
    replay = subcommands.add_parser(
        "replay", help="play a rosbag2 into the live planner graph on sim time, record and score its plans"
    )
    replay.add_argument("bag", help="a rosbag2 (folder or .mcap/.db3 file)")
    replay.add_argument("--planner", choices=sorted(PLANNERS), default="latentvla")
    replay.add_argument("--out", default="out/replay", help="output folder (bag, report.json/md, PNGs)")
    replay.add_argument(
        "--rate",
        type=float,
        help="play at this multiple of real time; default: lock-stepped, as fast as the graph answers",
    )
    replay.add_argument(
        "--plan-every",
        type=float,
        default=0.5,
        help="camera planners: plan on one frame per this many seconds (NAVSIM: 0.5); 0: every frame",
    )
    replay.add_argument("--model-dir", help="student/planner models (default: the shipped ones)")
    replay.add_argument(
        "--answer-timeout", type=float, default=10.0, help="lock-step: wall seconds to wait for a plan (a dead graph)"
    )
    add_bag_topic_options(replay)
    replay.set_defaults(handler=_cmd_replay)
    add_closed_loop_parser(subcommands)


# Closed loop: planner name -> (launch file with simulator + planner + recorder, its arguments).
CLOSED_LOOP = {
    "expert": ("demo.launch.yaml", {}),
    "constant_velocity": ("sim_baseline.launch.yaml", {}),
    "no_fusion": ("sim.launch.yaml", {"planner_model": SHIPPED_NO_FUSION_PLANNER}),
    "latentvla": ("sim.launch.yaml", {"planner_model": SHIPPED_PLANNER}),
    "latentvla_teacher": ("sim_teacher.launch.yaml", {}),
}


def _closed_loop_run(planner: str, run, run_dir: Path, model_dir: str | None = None) -> dict:
    """One suite entry driven by one planner through the live graph; its numbers."""
    import numpy as np

    from latentvla_ros.cli import _launch_file
    from latentvla_ros.data.drive_report import drive_report, read_odometry
    from latentvla_ros.evaluation.plan_scoring import score_plans
    from latentvla_ros.ros.launch_yaml import plan_launch, run_launch

    bag = run_dir / "bag"
    shutil.rmtree(bag, ignore_errors=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    launch_file, arguments = CLOSED_LOOP[planner]
    overrides = {
        **arguments,
        "scenario": run.scenario,
        "seed": str(run.seed),
        "duration_s": str(run.duration_s),
        "start_lateral_offset_m": str(run.lateral_offset_m),
        "start_heading_offset_rad": str(run.heading_offset_rad),
        "bag_path": str(bag),
    }
    if model_dir and launch_file in ("sim.launch.yaml", "sim_teacher.launch.yaml"):
        overrides["model_dir"] = model_dir
    log = run_dir / "launch.log"
    with open(log, "w") as output:  # the graph's own log lines stay out of the table
        status = run_launch(plan_launch(_launch_file(launch_file), overrides), output)
    if status != 0 or not bag.is_dir():
        raise GraphError(f"closed loop {planner} on {run.name}: the graph did not finish cleanly; see {log}")
    drive = drive_report(bag).summary()
    scores = score_plans(bag)
    _, poses = read_odometry(bag)
    steps = np.linalg.norm(np.diff(poses[:, :2], axis=0), axis=1) if len(poses) > 1 else np.zeros(0)
    return {
        "run": run.name,
        "bag": str(bag),
        "drive": drive,
        "scores": scores.summary(),
        "per_plan": scores.rows,
        "distance_km": float(steps[steps < 10.0].sum()) / 1000.0,  # episode restarts are jumps, not driving
        "steps": round(drive["simulated_s"] * 10.0),
    }


def _cmd_closed_loop(args: argparse.Namespace) -> int:
    import json

    from tqdm import tqdm

    from latentvla_ros.evaluation.closed_loop_figures import plot_scenario_paths, render_worst_moments
    from latentvla_ros.evaluation.closed_loop_suite import SUITES, aggregate_runs, suite_minutes
    from latentvla_ros.evaluation.evaluation_report import plot_scores, write_report

    out_dir = Path(args.out)
    suite = SUITES[args.suite]
    planners = args.planners.split(",")
    unknown = [p for p in planners if p not in CLOSED_LOOP]
    if unknown:
        raise ValueError(f"--planners: unknown {', '.join(unknown)}; choose from {', '.join(CLOSED_LOOP)}")
    print(
        f"closed loop: suite '{args.suite}' ({len(suite)} runs, {suite_minutes(args.suite):.3g} simulated minutes "
        f"per planner) x {len(planners)} planners, through the live ROS graph"
    )
    rows, runs_by_planner, skipped = {}, {}, []
    with tqdm(total=len(suite) * len(planners), desc="closed loop", unit="run", file=sys.stderr) as bar:
        for planner in planners:
            runs = []
            for run in suite:
                bar.set_postfix_str(f"{planner} {run.name}")
                saved = out_dir / planner / run.name / "run.json"
                if (args.reuse_runs or args.only_driven) and saved.is_file():  # driven in an earlier invocation
                    runs.append(json.loads(saved.read_text()))
                elif args.only_driven:
                    skipped.append(f"{planner} {run.name}")
                else:
                    runs.append(_closed_loop_run(planner, run, out_dir / planner / run.name, args.model_dir))
                    saved.write_text(json.dumps(runs[-1], indent=1, default=float))
                bar.update()
            if runs:
                runs_by_planner[planner] = runs
                rows[planner] = aggregate_runs(runs)
    command = (
        " ".join(["latentvla closed-loop", *(shlex.quote(a) for a in sys.argv[2:])])
        if sys.argv[1:2] == ["closed-loop"]
        else ""
    )
    details = {
        "command": command,
        "suite": args.suite,
        "runs": [run.__dict__ for run in suite],
        "not_driven": skipped,
        "per_run": {
            p: [{k: r[k] for k in ("run", "bag", "drive", "scores", "distance_km")} for r in runs]
            for p, runs in runs_by_planner.items()
        },
    }
    json_path, md_path = write_report(out_dir, f"Closed loop, suite '{args.suite}'", rows, details)
    print(md_path.read_text().split("\n", 2)[2].rstrip())
    if skipped:
        note = f"Not driven (the suite was stopped part way): {', '.join(skipped)}."
        md_path.write_text(md_path.read_text() + f"\n{note}\n")
        print(note)
    pictures = [plot_scores(rows, out_dir / "scores.png")]
    pictures += plot_scenario_paths(runs_by_planner, out_dir)
    learned = next((p for p in ("latentvla", "no_fusion", "latentvla_teacher") if p in runs_by_planner), None)
    learned = learned or next(iter(runs_by_planner), None)
    if learned is not None:
        pictures.append(render_worst_moments(runs_by_planner[learned], out_dir / f"worst_{learned}.png", learned))
    print(f"report:   {json_path}, {md_path}\npictures: {', '.join(str(p) for p in pictures if p)}")
    return 0


def add_closed_loop_parser(subcommands) -> None:
    from latentvla_ros.evaluation.closed_loop_suite import SUITES

    closed = subcommands.add_parser(
        "closed-loop", help="drive planners in the simulator through the live graph over a fixed suite; one table"
    )
    closed.add_argument("--suite", choices=sorted(SUITES), default="smoke")
    closed.add_argument("--planners", default=",".join(CLOSED_LOOP), help=f"comma list of {', '.join(CLOSED_LOOP)}")
    closed.add_argument("--model-dir", help="student/planner/teacher models (default: the shipped ones)")
    closed.add_argument(
        "--reuse-runs",
        action="store_true",
        help="take runs already driven into --out (their run.json) instead of driving them again",
    )
    closed.add_argument(
        "--only-driven",
        action="store_true",
        help="the table from the runs already in --out only (a suite stopped part way); lists what is missing",
    )
    closed.add_argument("--out", default="out/closed_loop", help="output folder (bags, report.json/md, PNGs)")
    closed.set_defaults(handler=_cmd_closed_loop)
