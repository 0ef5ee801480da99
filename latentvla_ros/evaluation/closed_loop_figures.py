"""Pictures of a closed-loop benchmark: driven paths per scenario, the worst moments.

From the runs' bags alone (read with rosbags): every planner's driven path over the
scenario's road, one PNG per scenario; and for one planner the plans that scored worst
(lowest PDMS, then largest FDE@4s) with the camera frame they were made from and the
plan projected onto it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from latentvla_ros import topics
from latentvla_ros.data.drive_report import frames_with_plans, read_odometry
from latentvla_ros.data.preview import draw_road_map
from latentvla_ros.evaluation.evaluation_report import PLANNER_COLORS


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_scenario_paths(runs_by_planner: dict[str, list[dict]], out_dir: Path) -> list[Path]:
    """One PNG per scenario: each planner's driven path (first run of that scenario) on the road."""
    plt = _pyplot()
    first_runs: dict[str, dict[str, dict]] = {}
    for planner, runs in runs_by_planner.items():
        for run in runs:
            scenario = run["run"].split("_seed")[0]
            first_runs.setdefault(scenario, {}).setdefault(planner, run)
    pictures = []
    for scenario, by_planner in first_runs.items():
        figure, axis = plt.subplots(figsize=(10, 7), dpi=100)
        draw_road_map(axis, scenario)
        extent = []
        for planner, run in by_planner.items():
            _, poses = read_odometry(Path(run["bag"]))
            if len(poses) == 0:
                continue
            jumps = np.flatnonzero(np.linalg.norm(np.diff(poses[:, :2], axis=0), axis=1) > 10.0) + 1
            for number, part in enumerate(np.split(poses, jumps)):
                axis.plot(
                    part[:, 0],
                    part[:, 1],
                    color=PLANNER_COLORS.get(planner),
                    linewidth=1.6,
                    label=planner if number == 0 else None,
                )
            extent.append(poses[:, :2])
        if extent:
            points = np.concatenate(extent)
            axis.set_xlim(points[:, 0].min() - 30, points[:, 0].max() + 30)
            axis.set_ylim(points[:, 1].min() - 30, points[:, 1].max() + 30)
        axis.set_aspect("equal")
        axis.legend(loc="upper right", fontsize=8)
        axis.set_title(f"{scenario}: driven paths ({next(iter(by_planner.values()))['run']})")
        path = out_dir / f"paths_{scenario}.png"
        figure.savefig(path)
        plt.close(figure)
        pictures.append(path)
    return pictures


def render_worst_moments(runs: list[dict], out_png: Path, planner: str, count: int = 4) -> Path | None:
    """The ``count`` worst-scored plans of ``runs`` with their camera frames."""
    plt = _pyplot()

    def badness(row: dict) -> tuple:
        pdms = row.get("pdms")
        return (pdms if pdms is not None and np.isfinite(pdms) else 1.0, -row["fde_4s"])

    candidates = sorted(((badness(row), row, run) for run in runs for row in run["per_plan"]), key=lambda c: c[0])
    chosen = candidates[:count]
    pictures = []
    for _, row, run in chosen:
        frames = frames_with_plans(Path(run["bag"]), 1, topics.CAMERA_IMAGE_COMPRESSED, [row["stamp_ns"]])
        if frames:
            pictures.append((run["run"], row, frames[0][1]))
    if not pictures:
        return None
    figure, axes = plt.subplots(1, len(pictures), figsize=(4.5 * len(pictures), 3.2), dpi=100, squeeze=False)
    for axis, (name, row, image) in zip(axes[0], pictures, strict=True):
        axis.imshow(image)
        pdms = row.get("pdms")
        score = f"PDMS {pdms:.2f}" if pdms is not None and np.isfinite(pdms) else "PDMS n/a"
        axis.set_title(f"{name} t={row['stamp_ns'] * 1e-9:.1f} s\n{score}, FDE@4s {row['fde_4s']:.1f} m", fontsize=8)
        axis.axis("off")
    figure.suptitle(f"{planner}: worst-scored plans (plan projected on the frame it was made from)", fontsize=10)
    figure.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out_png)
    plt.close(figure)
    return out_png
