"""How much of a planner's 4 s error could information it does not see explain?

The fusion planner can only beat its no-fusion twin if the latent actions carry something
the twin's inputs (the frame, the ego status, the command) do not. This measures the room
for that, chance-corrected by construction: a held-out probe. A gradient-boosted regressor
is fit, on training logs, to predict the planner's final-pose error (ahead and left in the
ego frame, at 4 s) from a set of features, and scored (R², and the FDE left after
correcting the plan by it) on held-out logs. Every set holds the ego status and command
(the *control*: what the planner already reads, so its R² stays near 0 unless the planner
underfits them), plus one of:

- ``student``: the student's latent-action distributions (what the fusion adds);
- ``teacher``: the teacher's, where the caches hold its answers (the undistilled latents);
- ``scene``: the ground truth of the nearest agent in view (now and one latent step
  before), the number in view, and the ego speed over the last 4 s (what a student with
  better perception or a longer history could at most add; logs with agents only);
- ``future_tokens``: the LAM's tokens of the next 3.6 s, one-hot (an oracle no car has:
  the ceiling of any latent action of this LAM).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from latentvla_ros.core.driving_command import DrivingCommand
from latentvla_ros.data.cache import LogSamples, log_entries, rows_at_frames
from latentvla_ros.evaluation.planner_evaluation import predict_planner
from latentvla_ros.evaluation.student_evaluation import predict_student
from latentvla_ros.models.latent_action import LatentActionModel
from latentvla_ros.models.latent_action_labelling import label_log
from latentvla_ros.models.planner import FusionPlanner
from latentvla_ros.models.planner_features import load_planner_samples
from latentvla_ros.models.student import LatentActionStudent

SPEED_HISTORY_FRAMES = np.arange(0, 41, 5)  # now and every 0.5 s back to 4 s, at 10 Hz
SCENE_FEATURES = 2 * 5 + 1 + len(SPEED_HISTORY_FRAMES)  # nearest agent now and before, count, speeds


def final_pose_error(predicted: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(N, 2) the logged minus the planned last pose: ahead and left of the ego, metres."""
    return np.asarray(target)[:, -1, :2] - np.asarray(predicted)[:, -1, :2]


def control_features(ego_status: np.ndarray, commands: np.ndarray) -> np.ndarray:
    """(N, 5 + commands) what every planner reads: ego status and the one-hot command."""
    one_hot = np.eye(len(DrivingCommand), dtype=np.float32)[np.asarray(commands, dtype=np.int64)]
    return np.concatenate([np.asarray(ego_status, dtype=np.float32), one_hot], axis=1)


def future_token_features(
    future_frames: np.ndarray, future_tokens: np.ndarray, frames: np.ndarray, codebook_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """One log's labels (``latentvla label``: ``future_frames`` (M,), ``future_tokens`` (M, T))
    at ``frames`` (N,) of that log -> ((N, T * K) one-hot, (N,) True where a frame has them)."""
    rows = rows_at_frames(future_frames, frames)
    tokens = np.asarray(future_tokens, dtype=np.int64)
    tokens = tokens[np.clip(rows, 0, None)] if len(tokens) else np.zeros((len(frames), tokens.shape[1]), np.int64)
    one_hot = np.eye(codebook_size, dtype=np.float32)[tokens].reshape(len(frames), -1)
    return one_hot, rows >= 0


def scene_features(arrays: dict, frames: np.ndarray, step_frames: int) -> np.ndarray:
    """(N, SCENE_FEATURES) of one log's cached arrays at ``frames``: the nearest agent in view (x, y, vx,
    vy relative to the ego; 0 with a flag when none) now and ``step_frames`` before, the
    number in view, and the ego's speed now and every 0.5 s back to 4 s (clipped at the start)."""
    nearest = np.asarray(arrays["frame_nearest_agent"], dtype=np.float32)
    present = np.isfinite(nearest[:, :1]).astype(np.float32)
    nearest = np.concatenate([np.nan_to_num(nearest, nan=0.0), present], axis=1)
    before = np.clip(frames - step_frames, 0, None)
    count = np.asarray(arrays["frame_agents_in_view"], dtype=np.float32)[frames, None]
    past = np.clip(frames[:, None] - SPEED_HISTORY_FRAMES[None, :], 0, None)
    speeds = np.asarray(arrays["frame_ego_status_live"], dtype=np.float32)[past, 0]
    return np.concatenate([nearest[frames], nearest[before], count, speeds], axis=1)


def probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, seed: int = 0) -> np.ndarray:
    """(N_test, D) a gradient-boosted regressor per output column, fit on the training rows."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    columns = []
    for column in range(train_y.shape[1]):
        # Slow and with large leaves: on the shipped drives these settings keep the control's
        # held-out R² near 0 (the README's headroom paragraph measured several).
        model = HistGradientBoostingRegressor(
            max_iter=300, learning_rate=0.02, min_samples_leaf=100, early_stopping=False, random_state=seed
        )
        columns.append(model.fit(train_x, train_y[:, column]).predict(test_x))
    return np.stack(columns, axis=1)


def r_squared(target: np.ndarray, predicted: np.ndarray) -> float:
    """1 - residual / total variance about the target's own mean (0: no better than it)."""
    total = float(np.sum((target - target.mean()) ** 2))
    return 1.0 - float(np.sum((target - predicted) ** 2)) / total if total > 0.0 else 0.0


def headroom(
    train: dict[str, np.ndarray], train_error: np.ndarray, test: dict[str, np.ndarray], test_error: np.ndarray
) -> dict:
    """Per feature set (``train``/``test``: name -> (N, D) features, the control among them as
    ``control``; the other sets are added to it): held-out R² of the error ahead and left,
    and the FDE@4s left after subtracting the probe's prediction from the plan."""
    rows = {}
    for name in test:
        extra = [] if name == "control" else [name]
        train_x = np.concatenate([train["control"], *[train[e] for e in extra]], axis=1)
        test_x = np.concatenate([test["control"], *[test[e] for e in extra]], axis=1)
        predicted = probe(train_x, train_error, test_x)
        rows[name] = {
            "features": int(test_x.shape[1]),
            "r2_ahead": r_squared(test_error[:, 0], predicted[:, 0]),
            "r2_left": r_squared(test_error[:, 1], predicted[:, 1]),
            "fde_4s_corrected": float(np.linalg.norm(test_error - predicted, axis=1).mean()),
        }
    return {"fde_4s": float(np.linalg.norm(test_error, axis=1).mean()), "samples": len(test_error), "sets": rows}


def _future_tokens_of(log: LogSamples, lam: LatentActionModel, lam_sha256: str) -> tuple[np.ndarray, np.ndarray]:
    """(future_frames, future_ego_tokens) of a log: the cache's labels when ``lam`` made them
    (``latentvla label``), else labelled here in memory (the cache is left as it is)."""
    labels = log.labels
    if labels is not None and json.loads(str(labels["model"])).get("sha256") == lam_sha256:
        return labels["future_frames"], labels["future_ego_tokens"]
    made = label_log(lam, log)
    return made.future_frames, made.future_ego_tokens


def headroom_features(
    cache: Path,
    split: str | None,
    planner: FusionPlanner,
    student: LatentActionStudent,
    lam: LatentActionModel,
    lam_sha256: str,
    rows: int | None = None,
) -> tuple[dict[str, np.ndarray], np.ndarray, list[str]]:
    """(features by set, the planner's final-pose error, notes on sets left out) for a cache's
    samples (one split, if given; ``rows``: a fixed random subset of that many), restricted
    to the samples with 12 future tokens so that every set is scored on the same ones. A
    fusion planner is fed by ``student``."""
    samples = load_planner_samples(
        cache,
        planner.config,
        split,
        student_size=student.config.image_size,
        student_history_frames=student.config.history_frames,
    )
    if rows is not None and len(samples) > rows:
        samples = samples.subset(np.sort(np.random.default_rng(0).choice(len(samples), rows, replace=False)))
    latents = predict_student(student, samples.student_images, samples.history, samples.ego_status, samples.commands)
    error = final_pose_error(predict_planner(planner, samples, latents), samples.trajectories)
    features = {
        "control": control_features(samples.ego_status, samples.commands),
        "student": latents["probabilities"].reshape(len(samples), -1),
    }
    notes = []
    if samples.teacher is not None:
        features["teacher"] = samples.teacher["probabilities"].reshape(len(samples), -1)
    else:
        notes.append("not every log holds the teacher's answers, so no 'teacher' set")
    tokens = np.zeros((len(samples), lam.config.horizon * lam.config.codebook_size), np.float32)
    scene = np.zeros((len(samples), SCENE_FEATURES), np.float32)
    labelled, every_log_has_agents = np.zeros(len(samples), dtype=bool), True
    for number, entry in enumerate(log_entries(cache, split)):
        mine = samples.log == number
        log = LogSamples.load(Path(cache) / entry["name"])
        future_frames, future_tokens = _future_tokens_of(log, lam, lam_sha256)
        tokens[mine], labelled[mine] = future_token_features(
            future_frames, future_tokens, samples.log_frame[mine], lam.config.codebook_size
        )
        if np.any(log.samples["frame_agents_in_view"] >= 0):
            scene[mine] = scene_features(log.samples, samples.log_frame[mine], lam.config.step_frames)
        else:
            every_log_has_agents = False
            notes.append(f"{entry['name']}: no ground-truth agents, so no 'scene' set")
    if every_log_has_agents:
        features["scene"] = scene
    features["future_tokens"] = tokens
    return {name: values[labelled] for name, values in features.items()}, error[labelled], notes
