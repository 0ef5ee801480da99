"""The closed-loop benchmark's fixed, seeded suites and how a planner's runs add up (ROS-free).

``default``: 30 minutes of driving per planner — each of highway, merge, roundabout and
intersection for 150 s on two seeds, plus one 150 s run per scenario that starts
perturbed (1.0 m beside the lane, turned 0.15 rad: the planner has to recover).
``smoke``: 20 s on the highway, for CI.

Per planner: the PDMS sub-scores of every plan (``plan_scoring``), averaged over all
plans of all runs; route completion averaged over episodes; collisions (all, and at
fault) per km driven; the off-road rate (simulation steps with a wheel off the road);
the comfort-violation rate (plans failing NAVSIM's comfort bounds: 1 - mean C).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SuiteRun:
    scenario: str
    seed: int
    duration_s: float
    lateral_offset_m: float = 0.0
    heading_offset_rad: float = 0.0

    @property
    def name(self) -> str:
        return f"{self.scenario}_seed{self.seed}" + (
            "_perturbed" if self.lateral_offset_m or self.heading_offset_rad else ""
        )


SCENARIOS = ("highway", "merge", "roundabout", "intersection")
SUITES = {
    "smoke": (SuiteRun("highway", 0, 20.0),),
    "default": tuple(
        [SuiteRun(scenario, seed, 150.0) for scenario in SCENARIOS for seed in (100, 101)]
        + [SuiteRun(scenario, 102, 150.0, 1.0, 0.15) for scenario in SCENARIOS]
    ),
}


def suite_minutes(name: str) -> float:
    return sum(run.duration_s for run in SUITES[name]) / 60.0


def aggregate_runs(runs: list[dict]) -> dict:
    """One planner's row from its runs; each run: ``drive`` (DriveReport.summary()),
    ``scores`` (PlanScores.summary()), ``distance_km``, ``steps``."""
    plans = sum(run["scores"].get("plans", 0) for run in runs)

    def plan_mean(key: str) -> float | None:
        weighted = [(run["scores"][key], run["scores"]["plans"]) for run in runs if run["scores"].get(key) is not None]
        total = sum(weight for _, weight in weighted)
        return round(sum(value * weight for value, weight in weighted) / total, 4) if total else None

    distance_km = sum(run["distance_km"] for run in runs)
    steps = sum(run["steps"] for run in runs)
    collisions = sum(run["drive"]["collisions"] for run in runs)
    at_fault = sum(run["drive"]["at_fault_collisions"] for run in runs)
    completion = [c for run in runs for c in run["drive"]["route_completion"]]
    comfort = plan_mean("c")
    # No ADE/FDE here: in closed loop the driven future follows the plan, so they measure how
    # consistent successive plans are, not how good (the runs' JSON keeps them as such).
    row = {key: plan_mean(key) for key in ("pdms", "nc", "dac", "ttc", "ep", "c")}
    row.update(
        {
            "route_completion": round(float(np.mean(completion)), 4) if completion else None,
            "collisions": collisions,
            "at_fault_collisions": at_fault,
            "collisions_per_km": round(collisions / distance_km, 3) if distance_km > 0 else None,
            "at_fault_collisions_per_km": round(at_fault / distance_km, 3) if distance_km > 0 else None,
            "off_road_rate": round(sum(run["drive"]["off_road_steps"] for run in runs) / steps, 4) if steps else None,
            "comfort_violation_rate": round(1.0 - comfort, 4) if comfort is not None else None,
            "distance_km": round(distance_km, 3),
            "simulated_s": round(sum(run["drive"]["simulated_s"] for run in runs), 1),
            "plans": plans,
            "runs": len(runs),
        }
    )
    return row
