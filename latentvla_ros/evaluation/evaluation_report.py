"""Reports of replay and closed-loop runs (ROS-free): one table in JSON and Markdown, and PNGs.

Rows are planners; columns the metrics both commands share: PDMS and its sub-scores
(where the bag has ground-truth agents), ADE/FDE against the logged future, and for
closed loop the driving outcomes (route completion, collisions per km, off-road rate,
comfort). A value the run could not measure is ``None`` and shows as "n/a", never 0.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

TABLE_COLUMNS = (
    ("pdms", "PDMS"),
    ("nc", "NC"),
    ("dac", "DAC"),
    ("ttc", "TTC"),
    ("ep", "EP"),
    ("c", "C"),
    ("ade_4s", "ADE@4s m"),
    ("fde_4s", "FDE@4s m"),
    ("route_completion", "route compl."),
    ("collisions_per_km", "coll./km"),
    ("at_fault_collisions_per_km", "at-fault/km"),
    ("off_road_rate", "off-road"),
    ("comfort_violation_rate", "comfort viol."),
    ("plans", "plans"),
)


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "n/a"
    if isinstance(value, int):
        return str(value)
    return f"{value:.3f}"


def markdown_table(rows: dict[str, dict]) -> str:
    """Planners as rows; only the columns some planner has."""
    columns = [(key, title) for key, title in TABLE_COLUMNS if any(key in row for row in rows.values())]
    lines = [
        "| planner | " + " | ".join(title for _, title in columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for name, row in rows.items():
        lines.append(f"| {name} | " + " | ".join(_cell(row.get(key)) for key, _ in columns) + " |")
    return "\n".join(lines) + "\n"


def write_report(out_dir: Path, title: str, rows: dict[str, dict], details: dict) -> tuple[Path, Path]:
    """``report.json`` (rows + details) and ``report.md`` (the table + how it was made)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "report.json"
    json_path.write_text(json.dumps({"title": title, "rows": rows, **details}, indent=2, default=float) + "\n")
    md_path = out_dir / "report.md"
    command = details.get("command", "")
    md_path.write_text(f"# {title}\n\n{markdown_table(rows)}\n" + (f"Made by: `{command}`\n" if command else ""))
    return json_path, md_path


# One colour per planner in every figure (bars, driven paths); others take matplotlib's cycle.
PLANNER_COLORS = {
    "expert": "black",
    "constant_velocity": "tab:gray",
    "no_fusion": "tab:orange",
    "latentvla": "tab:green",
    "latentvla_teacher": "tab:purple",
}


def plot_scores(rows: dict[str, dict], out_png: Path, keys=("pdms", "nc", "dac", "ttc", "ep", "c")) -> Path | None:
    """Bar chart of the PDMS sub-scores per planner (None when no row has them)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in keys if any(row.get(k) is not None for row in rows.values())]
    if not keys:
        return None
    figure, axis = plt.subplots(figsize=(1.6 * len(keys) + 3, 4))
    width = 0.8 / max(len(rows), 1)
    for index, (name, row) in enumerate(rows.items()):
        values = [row.get(k) if row.get(k) is not None else 0.0 for k in keys]
        axis.bar(np.arange(len(keys)) + index * width, values, width, label=name, color=PLANNER_COLORS.get(name))
    axis.set_xticks(np.arange(len(keys)) + width * (len(rows) - 1) / 2, [k.upper() for k in keys])
    axis.set_ylim(0, 1.05)
    axis.set_ylabel("score (mean over plans)")
    axis.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out_png, dpi=100)
    plt.close(figure)
    return out_png
