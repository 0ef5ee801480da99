"""The distilled student and the fusion planner: shapes, the distillation loss, the fusion
switch, safetensors round trips with sha256, physical limits, the paper-size student, the
perturbation filter, and the train/eval commands end to end on a tiny cache with a tiny
real Qwen2.5-VL teacher."""

import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers.lam_cache import write_cache

from latentvla_ros.core.driving_command import DrivingCommand
from latentvla_ros.evaluation import error_headroom
from latentvla_ros.evaluation.block_bootstrap import block_bootstrap_interval, paired_difference
from latentvla_ros.evaluation.planner_evaluation import (
    aggregate,
    displacement_errors,
    paired_comparisons,
    sample_ade,
)
from latentvla_ros.evaluation.student_evaluation import agreement_by_teacher_confidence
from latentvla_ros.models.checkpoint import CheckpointError, resume_point
from latentvla_ros.models.planner import (
    POSITION_LOSSES,
    FusionPlanner,
    LatentInput,
    PlannerConfig,
    PlannerOutput,
    bev_cell_centres,
    planner_loss,
)
from latentvla_ros.models.planner_features import load_planner_samples, perturbed_future
from latentvla_ros.models.student import PAPER_STUDENT, LatentActionStudent, StudentConfig, distillation_kl
from latentvla_ros.models.student_features import resize_frames
from latentvla_ros.models.teacher.teacher_config import TeacherConfig
from latentvla_ros.models.teacher.teacher_model import LatentActionTeacher
from latentvla_ros.training.planner_stage import PlannerTrainingConfig, student_latents
from latentvla_ros.training.student_stage import StudentTrainingConfig, student_loss

SMALL_STUDENT = StudentConfig(width=32, layers=1, heads=2, encoder_channels=(8, 16, 16, 32), embedding_dim=24)
SMALL_PLANNER = PlannerConfig(width=32, heads=2, image_layers=1, decoder_layers=1, latent_embedding_dim=24)
BIN = Path(sys.executable).parent


def _inputs(batch: int, history: int = 2, seed: int = 0):
    rng = np.random.default_rng(seed)
    frames = torch.from_numpy(rng.integers(0, 255, size=(batch, history, 64, 128, 3), dtype=np.uint8))
    status = torch.from_numpy(np.column_stack([rng.uniform(0, 35, batch), np.zeros((batch, 4))]).astype(np.float32))
    commands = torch.from_numpy(rng.integers(0, len(DrivingCommand), batch))
    return frames, status, commands


def _latent(batch: int, seed: int = 0, embedding_dim: int = 24) -> LatentInput:
    generator = torch.Generator().manual_seed(seed)
    return LatentInput(
        torch.softmax(torch.randn(batch, 12, 16, generator=generator), dim=-1),
        torch.randn(batch, 12, embedding_dim, generator=generator),
        torch.randn(batch, embedding_dim, generator=generator),
    )


def _loss_batch(frames, status, commands, teacher: torch.Tensor) -> dict:
    """A training batch for ``student_loss``: no embedding targets to speak of, no LAM labels."""
    batch = len(frames)
    return {
        "frames": frames, "ego_status": status, "commands": commands, "probabilities": teacher,
        "action_embeddings": torch.zeros(batch, 12, 24), "visual_embedding": torch.zeros(batch, 24),
        "lam_targets": torch.full((batch, 12), -1),
    }  # fmt: skip


def test_student_output_shapes_match_the_teacher_output():
    student = LatentActionStudent(SMALL_STUDENT).eval()
    frames, status, commands = _inputs(3)
    with torch.no_grad():
        output = student(frames, status, commands)
    assert output.logits.shape == (3, 12, 16)
    assert output.tokens.shape == (3, 12) and int(output.tokens.max()) < 16
    torch.testing.assert_close(output.probabilities.sum(-1), torch.ones(3, 12))
    assert output.action_embeddings.shape == (3, 12, 24)
    assert output.visual_embedding.shape == (3, 24)


def test_autoregressive_student_reads_only_the_codes_before_each_step():
    """The teacher's step-k distribution follows its own greedy codes before k: the student's
    step k reads codes < k and nothing after, and greedy decoding is the teacher-forced pass
    on the codes it chose."""
    torch.manual_seed(0)
    student = LatentActionStudent(replace(SMALL_STUDENT, autoregressive=True)).eval()
    frames, status, commands = _inputs(3)
    codes = torch.from_numpy(np.random.default_rng(1).integers(0, 16, size=(3, 12)))
    changed = codes.clone()
    changed[:, 5] = (changed[:, 5] + 1) % 16
    with torch.no_grad():
        forced, other = student(frames, status, commands, codes), student(frames, status, commands, changed)
        greedy = student(frames, status, commands)
        replayed = student(frames, status, commands, greedy.tokens)
    torch.testing.assert_close(other.logits[:, :6], forced.logits[:, :6])
    assert float((other.logits[:, 6:] - forced.logits[:, 6:]).abs().max()) > 1e-3
    torch.testing.assert_close(other.visual_embedding, forced.visual_embedding)
    assert torch.equal(replayed.tokens, greedy.tokens)
    torch.testing.assert_close(replayed.logits, greedy.logits)
    with pytest.raises(ValueError, match="autoregressive"):
        LatentActionStudent(replace(SMALL_STUDENT, autoregressive=False))(frames, status, commands, codes)
    # Checkpoints written before the option existed hold a one-pass student.
    values = replace(SMALL_STUDENT, autoregressive=True).to_dict()
    del values["autoregressive"]
    assert StudentConfig.from_dict(values).autoregressive is False


def test_student_loss_feeds_an_autoregressive_student_the_teachers_codes():
    torch.manual_seed(0)
    student = LatentActionStudent(replace(SMALL_STUDENT, autoregressive=True))
    frames, status, commands = _inputs(2)
    teacher = torch.softmax(3 * torch.randn(2, 12, 16), -1)
    batch = _loss_batch(frames, status, commands, teacher)
    _, terms = student_loss(StudentTrainingConfig(lam_weight=0.0))(student, batch)
    with torch.no_grad():
        forced = student(frames, status, commands, teacher.argmax(-1)).logits
        greedy = student.eval()(frames, status, commands).logits
    assert float(terms["kl"]) == pytest.approx(float(distillation_kl(forced, teacher)), rel=1e-5)
    assert float(terms["kl"]) != pytest.approx(float(distillation_kl(greedy, teacher)), rel=1e-3)


def test_distillation_kl_is_zero_only_when_the_distributions_match():
    logits = torch.randn(4, 12, 16)
    for temperature in (1.0, 2.0):
        assert float(distillation_kl(logits, torch.softmax(logits, -1), temperature)) == pytest.approx(0.0, abs=1e-5)
    other = torch.softmax(torch.randn(4, 12, 16), -1)
    assert float(distillation_kl(logits, other)) > 0.05


def test_student_loss_adds_the_teacher_top1_cross_entropy_only_when_asked():
    """hard_label_weight adds w x CE(student logits, the teacher's most likely code), by hand."""
    torch.manual_seed(0)
    student = LatentActionStudent(SMALL_STUDENT)
    frames, status, commands = _inputs(2)
    teacher = torch.softmax(3 * torch.randn(2, 12, 16), -1)
    batch = _loss_batch(frames, status, commands, teacher)
    plain, plain_terms = student_loss(StudentTrainingConfig())(student, batch)
    hard, hard_terms = student_loss(StudentTrainingConfig(hard_label_weight=0.5))(student, batch)
    with torch.no_grad():
        logits = student(frames, status, commands).logits
    by_hand = F.cross_entropy(logits.reshape(-1, 16), teacher.argmax(-1).reshape(-1))
    assert "teacher_top1_cross_entropy" not in plain_terms
    assert float(hard_terms["teacher_top1_cross_entropy"]) == pytest.approx(float(by_hand), rel=1e-5)
    assert float((hard - plain).detach()) == pytest.approx(0.5 * float(by_hand), rel=1e-4)
    nan = float("nan")  # compares false with everything: a bare `< 0` check lets it through
    for bad in (
        {"hard_label_weight": -0.1}, {"lam_weight": -1.0}, {"embedding_weight": nan}, {"lam_weight": float("inf")},
        {"temperature": 0.0}, {"temperature": nan},
    ):  # fmt: skip
        with pytest.raises(ValueError, match=next(iter(bad))):
            StudentTrainingConfig(**bad)


def test_agreement_by_teacher_confidence_by_hand():
    """Bands of the teacher's top probability: each pair counted once, 1.0 in the top band."""
    flat, peaked, certain = [0.2] * 5, [0.6, 0.1, 0.1, 0.1, 0.1], [1.0, 0.0, 0.0, 0.0, 0.0]
    teacher = np.array([[flat, peaked], [peaked, certain]])  # (2 frames, 2 steps, 5 codes)
    agreement = np.array([[True, True], [False, True]])
    bands = agreement_by_teacher_confidence(teacher, agreement)
    assert [band["teacher_top_probability"] for band in bands] == [
        [0.0, 0.3],
        [0.3, 0.5],
        [0.5, 0.7],
        [0.7, 0.9],
        [0.9, 1.0],
    ]
    assert [band["fraction"] for band in bands] == [0.25, 0.0, 0.5, 0.0, 0.25]
    assert [band["agreement"] for band in bands] == [1.0, None, 0.5, None, 1.0]


def test_block_bootstrap_widens_with_correlated_frames():
    """Frames that move together in 100-frame runs (a scene held for 10 s) carry ~40 draws, not
    3,600: resampling whole blocks gives the wide interval that implies, single frames a
    far too narrow one."""
    rng = np.random.default_rng(3)
    logs = np.repeat(np.arange(8), 450)  # eight 45 s logs, as the fresh seeds
    runs = rng.integers(0, 2, size=8 * 5).astype(float)  # one value per 100-frame run of a log
    values = np.concatenate([np.repeat(runs[5 * log : 5 * log + 5], 100)[:450] for log in range(8)])
    low, high = block_bootstrap_interval(values, logs)
    frame_low, frame_high = block_bootstrap_interval(values, logs, block_frames=1)
    assert low <= values.mean() <= high and frame_low <= values.mean() <= frame_high
    # 40 blocks of 0/1 at p ~ 0.5: 95 % width ~ 4 x 0.5 / sqrt(40) ~ 0.3; frames alone ~ 0.03.
    assert 0.2 < high - low < 0.45
    assert high - low > 5 * (frame_high - frame_low)
    assert block_bootstrap_interval(values, logs) == (low, high)  # deterministic for a seed


def test_paired_difference_is_narrower_than_either_students_interval():
    """Two students that share the hard and easy stretches of the drives and differ by a little
    on each frame: the paired interval sits around that little, each one's own is wide."""
    rng = np.random.default_rng(5)
    logs = np.repeat(np.arange(8), 450)
    scene = np.concatenate([np.repeat(rng.uniform(0.4, 0.95, size=5), 100)[:450] for _ in range(8)])  # 10 s stretches
    other = np.clip(scene + rng.normal(0.0, 0.05, size=len(logs)), 0.0, 1.0)
    better = np.clip(scene + 0.02 + rng.normal(0.0, 0.05, size=len(logs)), 0.0, 1.0)
    paired = paired_difference(better, other, logs)
    low, high = paired["interval_95"]
    assert low <= paired["difference"] <= high and 0.0 < low < 0.02 < high < 0.04
    own_low, own_high = block_bootstrap_interval(better, logs)
    assert own_high - own_low > 5 * (high - low)


def test_paired_planner_comparisons_follow_the_sign_and_need_both_planners():
    """A planner 0.3 m better than its ablation on every sample of shared hard and easy
    stretches: the paired difference is -0.3 with a tight interval; a planner exactly half of
    constant velocity's error gives 0 against that bar; a pair with a missing planner is left out."""
    rng = np.random.default_rng(3)
    logs = np.repeat(np.arange(6), 300)
    scene = np.concatenate([np.repeat(rng.uniform(0.5, 3.0, size=3), 100) for _ in range(6)])
    ade = {
        "no_fusion": scene + 0.3 + rng.normal(0.0, 0.05, size=len(logs)),
        "latentvla_student": scene + rng.normal(0.0, 0.05, size=len(logs)),
    }
    ade["constant_velocity"] = 2.0 * ade["latentvla_student"]
    paired = paired_comparisons(ade, logs)
    assert set(paired) == {"student_minus_no_fusion", "student_minus_half_constant_velocity"}
    low, high = paired["student_minus_no_fusion"]["interval_95"]
    assert -0.32 < low <= paired["student_minus_no_fusion"]["difference"] <= high < -0.28
    assert paired["student_minus_half_constant_velocity"] == {"difference": 0.0, "interval_95": (0.0, 0.0)}
    assert sample_ade(np.zeros((2, 8, 3)), np.full((2, 8, 3), 3.0)) == pytest.approx([np.hypot(3, 3)] * 2)


def test_block_bootstrap_refuses_bad_input_and_needs_two_blocks():
    values, logs = np.linspace(0.0, 1.0, 150), np.zeros(150, dtype=int)
    low, high = block_bootstrap_interval(values, logs)  # a full block and a 50-frame one
    assert low < high
    assert block_bootstrap_interval(values[:100], logs[:100]) is None  # one block: nothing to resample
    with pytest.raises(ValueError, match="finite"):
        block_bootstrap_interval(np.where(values > 0.5, np.nan, values), logs)
    with pytest.raises(ValueError, match="alike"):
        block_bootstrap_interval(values, logs[:-1])
    with pytest.raises(ValueError, match="block_frames"):
        block_bootstrap_interval(values, logs, block_frames=0)


def test_paper_size_student_has_about_fifty_million_parameters():
    with torch.device("meta"):
        student = LatentActionStudent(PAPER_STUDENT)
    parameters = sum(p.numel() for p in student.parameters())
    assert 40e6 < parameters < 60e6, parameters
    with torch.device("meta"):
        output = student(
            torch.zeros(1, 2, PAPER_STUDENT.image_height, PAPER_STUDENT.image_width, 3, dtype=torch.uint8),
            torch.zeros(1, 5),
            torch.zeros(1, dtype=torch.long),
        )
    assert output.logits.shape == (1, 12, 16) and output.action_embeddings.shape == (1, 12, 128)


def test_the_fusion_switch():
    torch.manual_seed(0)
    fusion = FusionPlanner(SMALL_PLANNER).eval()
    ablation = FusionPlanner(replace(SMALL_PLANNER, use_fusion=False)).eval()
    assert not any(name.startswith(("fusion", "latent")) for name, _ in ablation.named_parameters())
    assert any(name.startswith("fusion_blocks") for name, _ in fusion.named_parameters())
    frames, status, commands = _inputs(2)
    current = frames[:, -1]
    with torch.no_grad():
        a = fusion(current, status, commands, _latent(2, seed=1)).poses
        b = fusion(current, status, commands, _latent(2, seed=2)).poses
        c = ablation(current, status, commands, _latent(2, seed=1)).poses
        d = ablation(current, status, commands, None).poses
    assert not torch.allclose(a, b), "the fusion planner must depend on the latent actions"
    torch.testing.assert_close(c, d)  # the ablation ignores them
    with pytest.raises(ValueError, match="needs latent actions"):
        fusion(current, status, commands, None)


def test_a_dropped_fusion_leaves_the_image_path_alone():
    """Latent-action dropout: a sample whose fusion is dropped is planned from the image alone
    (its output does not depend on the latent actions), the others as without dropout."""
    torch.manual_seed(0)
    fusion = FusionPlanner(SMALL_PLANNER).eval()
    frames, status, commands = _inputs(2)
    current = frames[:, -1]
    keep = torch.tensor([True, False])
    with torch.no_grad():
        a = fusion(current, status, commands, _latent(2, seed=1), keep).poses
        b = fusion(current, status, commands, _latent(2, seed=2), keep).poses
        full = fusion(current, status, commands, _latent(2, seed=1)).poses
    torch.testing.assert_close(a[1], b[1])  # dropped: the latent actions do not reach it
    assert not torch.allclose(a[0], b[0])  # kept: they do
    torch.testing.assert_close(a[0], full[0])
    for share in (-0.1, 1.0, float("nan")):
        with pytest.raises(ValueError, match="latent_dropout"):
            PlannerTrainingConfig(latent_dropout=share)


def test_planner_outputs_stay_within_physical_limits_for_random_inputs():
    config = SMALL_PLANNER
    torch.manual_seed(3)
    planner = FusionPlanner(config).eval()
    for parameter in planner.trajectory_head.parameters():  # large raw outputs push every bound
        torch.nn.init.normal_(parameter, std=3.0)
    frames, status, commands = _inputs(16, seed=4)
    status[:, 0] = torch.linspace(0.0, 39.0, 16)
    with torch.no_grad():
        output = planner(frames[:, -1], status, commands, _latent(16, seed=5))
    assert output.poses.shape == (16, 8, 3) and torch.isfinite(output.poses).all()
    speeds, acceleration, curvature = output.speeds, output.controls[..., 0], output.controls[..., 1]
    assert float(speeds.min()) >= 0.0 and float(speeds.max()) <= config.max_speed_mps + 1e-4
    assert float(acceleration.max()) <= config.max_acceleration_mps2 + 1e-5
    assert float(acceleration.min()) >= -config.max_deceleration_mps2 - 1e-5
    assert float(curvature.abs().max()) <= config.max_curvature_per_m + 1e-6
    lateral = curvature * speeds**2
    assert float(lateral.abs().max()) <= config.max_lateral_acceleration_mps2 + 1e-3
    # The poses agree: no step longer than the speed limit allows.
    step = torch.diff(torch.cat([torch.zeros(16, 1, 3), output.poses], dim=1)[..., :2], dim=1).norm(dim=-1)
    assert float(step.max()) <= config.max_speed_mps * config.interval_s + 1e-3
    # Never backwards: each step advances along the heading it started with.
    poses = torch.cat([torch.zeros(16, 1, 3), output.poses], dim=1)
    step_xy = torch.diff(poses[..., :2], dim=1)
    heading = torch.stack([torch.cos(poses[:, :-1, 2]), torch.sin(poses[:, :-1, 2])], dim=-1)
    assert float((step_xy * heading).sum(-1).min()) >= -1e-4


def test_bev_cells_follow_the_raster_layout():
    """Row 0 is far ahead, column 0 is left: the same layout as simulation.bev rasters."""
    config = PlannerConfig()
    centres = bev_cell_centres(config).view(config.bev_cells, config.bev_cells, 2)
    assert float(centres[0, 0, 0]) > float(centres[-1, 0, 0])  # x decreases down the rows
    assert float(centres[0, 0, 1]) > float(centres[0, -1, 1])  # y decreases to the right


def test_student_and_planner_round_trip_through_safetensors_with_sha256(tmp_path):
    torch.manual_seed(0)
    student = LatentActionStudent(SMALL_STUDENT)
    student.save(tmp_path / "student_v1.0", "1.0")
    planner = FusionPlanner(SMALL_PLANNER)
    planner.save(tmp_path / "planner_v1.0", "1.0")
    loaded_student, description = LatentActionStudent.load(tmp_path / "student_v1.0")
    loaded_planner, _ = FusionPlanner.load(tmp_path / "planner_v1.0")
    assert description["kind"] == "student" and len(description["sha256"]) == 64
    frames, status, commands = _inputs(2)
    with torch.no_grad():
        torch.testing.assert_close(
            student.eval()(frames, status, commands).logits, loaded_student(frames, status, commands).logits
        )
        latent = _latent(2)
        torch.testing.assert_close(
            planner.eval()(frames[:, -1], status, commands, latent).poses,
            loaded_planner(frames[:, -1], status, commands, latent).poses,
        )
    assert not list(tmp_path.glob("*.pt")) and not list(tmp_path.glob("*.bin"))
    weights = tmp_path / "planner_v1.0.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        FusionPlanner.load(tmp_path / "planner_v1.0")


def test_resuming_a_planner_checkpoint_of_another_configuration_is_refused(tmp_path):
    """A fusion run continued as the ablation would load the wrong weights: one clear error."""
    config = PlannerConfig()
    FusionPlanner(config).save(tmp_path / "planner_checkpoint", "1.0", {"step": 3})
    ablation = replace(config, use_fusion=False)
    with pytest.raises(CheckpointError, match="use_fusion: True != False"):
        resume_point(tmp_path / "planner_checkpoint", FusionPlanner(ablation), True, tmp_path, ablation.to_dict())
    step, _ = resume_point(tmp_path / "planner_checkpoint", FusionPlanner(config), True, tmp_path, config.to_dict())
    assert step == 3


def test_samples_whose_future_holds_a_perturbation_are_left_out_but_recoveries_stay():
    second = 1_000_000_000
    stamps = np.arange(0, 20) * second
    table = np.array([[1, 10 * second, 12 * second]])  # kind, start, end
    perturbed = perturbed_future(stamps, table, horizon_s=4.0)
    # Futures [t, t + 4 s) that overlap [10 s, 12 s): t = 7..11; from 12 s on, the recovery is kept.
    assert np.flatnonzero(perturbed).tolist() == [7, 8, 9, 10, 11]
    assert not perturbed_future(stamps, np.zeros((0, 3), np.int64), 4.0).any()


def test_a_student_of_another_input_size_reads_its_own_frames(tmp_path):
    """The planner and the student each resize the camera frame to their own input size, as
    on the car; planner training and evaluation give the student its size, not the planner's."""
    cache = write_cache(tmp_path / "cache", frame_shape=(128, 256))
    student = LatentActionStudent(replace(SMALL_STUDENT, image_height=32, image_width=64)).eval()
    same = load_planner_samples(cache, SMALL_PLANNER, "train", student_size=(64, 128))
    assert same.student_images is same.images  # one size: one array in memory
    samples = load_planner_samples(cache, SMALL_PLANNER, "train", student_size=(32, 64))
    assert samples.images.shape[1:3] == (64, 128) and samples.student_images.shape[1:3] == (32, 64)
    frames = np.load(cache / "log_a" / "frames.npy")  # from the camera's frames, not the planner's
    np.testing.assert_array_equal(samples.student_images, resize_frames(frames, 64, 32))
    latents = student_latents(student, samples.subset(np.arange(4)))
    with torch.inference_mode():
        expected = student(
            torch.from_numpy(samples.student_images[samples.history[:4]]),
            torch.from_numpy(samples.ego_status[:4]),
            torch.from_numpy(samples.commands[:4]),
        )
    np.testing.assert_allclose(latents["probabilities"], expected.probabilities.numpy(), atol=1e-6)
    with pytest.raises(ValueError, match="the student reads"):
        student_latents(student, same)
    # A student of three frames gets three (one latent step apart), not the default two.
    longer = LatentActionStudent(replace(SMALL_STUDENT, history_frames=3)).eval()
    three = load_planner_samples(cache, SMALL_PLANNER, "train", student_history_frames=3)
    np.testing.assert_array_equal(three.history[:, 1:], same.history)  # the same frames, one older before them
    np.testing.assert_array_equal(three.history[:, 0], np.clip(same.history[:, 0] - 3, 0, None))
    assert student_latents(longer, three)["probabilities"].shape == (len(three), SMALL_STUDENT.horizon, 16)
    with pytest.raises(ValueError, match="samples hold 2 frames each, the student reads 3"):
        student_latents(longer, same)


def test_displacement_errors_by_hand():
    target = np.zeros((1, 8, 3))
    predicted = np.zeros((1, 8, 3))
    predicted[0, :, 1] = np.arange(1, 9)  # 1 m more lateral error every 0.5 s
    errors = displacement_errors(predicted, target)
    assert errors["ade_1s"] == pytest.approx(1.5) and errors["fde_1s"] == pytest.approx(2.0)
    assert errors["ade_4s"] == pytest.approx(4.5) and errors["fde_4s"] == pytest.approx(8.0)
    summary = aggregate([{"ade_4s": 1.0}, {"ade_4s": 3.0}])
    assert summary["ade_4s"] == 2.0 and summary["ade_4s_std"] == 1.0 and summary["seeds"] == 2


def test_planner_position_losses_by_hand():
    """L1 sums |dx| + |dy|; the euclidean loss is the distance ADE averages; ~0 on target."""
    target = torch.zeros(1, 8, 3)
    predicted = torch.zeros(1, 8, 3)
    predicted[0, :, 0], predicted[0, :, 1] = 3.0, 4.0  # 5 m off at every pose
    bev = torch.zeros(1, 3, 4, 4)
    no_bev = torch.zeros(1, dtype=torch.bool)

    def loss(poses, kind):
        total, _ = planner_loss(PlannerOutput(poses, None, None, None), target, bev, no_bev, 0.5, position_loss=kind)
        return total.item()

    assert loss(predicted, "l1") == pytest.approx(7.0)
    assert loss(predicted, "euclidean") == pytest.approx(5.0)
    # The euclidean loss's epsilon (finite gradient at 0) floors it at sqrt(1e-6) = 1 mm.
    assert loss(target.clone(), "l1") == 0.0 and loss(target.clone(), "euclidean") == pytest.approx(1e-3)
    with pytest.raises(ValueError, match="position_loss"):
        loss(predicted, "l2")
    with pytest.raises(ValueError, match="position_loss"):
        PlannerTrainingConfig(position_loss="l2")


def test_planner_training_refuses_a_negative_or_nan_bev_weight():
    assert PlannerTrainingConfig(bev_weight=0.0).bev_weight == 0.0  # 0: the BEV head is not trained
    for weight in (-0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="bev_weight"):
            PlannerTrainingConfig(bev_weight=weight)


def test_headroom_probe_finds_what_explains_an_error_and_nothing_where_nothing_does():
    """Held-out probes: a feature the error depends on explains most of it, random features
    and the control explain about none, and the corrected FDE follows."""
    rng = np.random.default_rng(0)

    def draw(count: int):
        cause = rng.normal(size=(count, 1))
        error = np.column_stack([3.0 * cause[:, 0], -(cause[:, 0] ** 2)]) + 0.3 * rng.normal(size=(count, 2))
        sets = {"control": rng.normal(size=(count, 3)), "cause": cause, "noise": rng.normal(size=(count, 4))}
        return sets, error

    train, train_error = draw(3000)
    test, test_error = draw(800)
    report = error_headroom.headroom(train, train_error, test, test_error)
    rows = report["sets"]
    assert report["samples"] == 800 and rows["cause"]["features"] == 4 and rows["noise"]["features"] == 7
    assert rows["cause"]["r2_ahead"] > 0.9 and rows["cause"]["r2_left"] > 0.5
    for name in ("control", "noise"):
        assert abs(rows[name]["r2_ahead"]) < 0.05 and abs(rows[name]["r2_left"]) < 0.05
        assert rows[name]["fde_4s_corrected"] == pytest.approx(report["fde_4s"], rel=0.05)
    assert rows["cause"]["fde_4s_corrected"] < 0.3 * report["fde_4s"]
    assert error_headroom.r_squared(np.ones(5), np.zeros(5)) == 0.0  # no variance: nothing to explain


def test_headroom_features_by_hand():
    future_frames = np.array([2, 4])
    tokens = np.array([[1, 0], [3, 2]])
    one_hot, labelled = error_headroom.future_token_features(future_frames, tokens, np.array([4, 3, 2]), 4)
    assert labelled.tolist() == [True, False, True]
    assert one_hot[0].tolist() == [0, 0, 0, 1, 0, 0, 1, 0] and one_hot[2].tolist() == [0, 1, 0, 0, 1, 0, 0, 0]
    none, labelled = error_headroom.future_token_features(np.zeros(0, int), np.zeros((0, 2), int), np.arange(3), 4)
    assert none.shape == (3, 8) and not labelled.any()
    arrays = {
        "frame_nearest_agent": np.array([[np.nan] * 4, [10.0, 1.0, -2.0, 0.0], [8.0, 1.0, -2.0, 0.0]]),
        "frame_agents_in_view": np.array([0, 1, 2]),
        "frame_ego_status_live": np.column_stack([np.array([5.0, 6.0, 7.0]), np.zeros((3, 4))]),
    }
    features = error_headroom.scene_features(arrays, np.array([2]), step_frames=2)[0]
    assert len(features) == error_headroom.SCENE_FEATURES
    assert features[:5].tolist() == [8.0, 1.0, -2.0, 0.0, 1.0]  # the nearest agent now, present
    assert features[5:10].tolist() == [0.0, 0.0, 0.0, 0.0, 0.0]  # none two frames before: zeros, flag 0
    assert features[10] == 2.0 and features[11:].tolist() == [7.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0]
    control = error_headroom.control_features(np.ones((2, 5)), np.array([0, len(DrivingCommand) - 1]))
    assert control.shape == (2, 5 + len(DrivingCommand)) and control[1, -1] == 1.0 and control[:, 5:].sum() == 2


def _run(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "latentvla"), *arguments], capture_output=True, text=True, timeout=600, check=False
    )


TINY_TEACHER = TeacherConfig(
    image_height=28, image_width=56, text_hidden_size=24, text_layers=1, text_heads=2, text_kv_heads=1,
    text_intermediate_size=48, vision_hidden_size=32, vision_layers=1, vision_heads=2, vision_intermediate_size=64,
)  # fmt: skip


def test_train_and_eval_student_and_planner_commands(tmp_path):
    """The chain after the teacher, through the CLI: teacher outputs into the cache, the
    student distilled, fusion and no-fusion planners trained, both evaluations' JSON."""
    cache = write_cache(tmp_path / "cache", frames=80)
    teacher = tmp_path / "teacher_v1.0"
    LatentActionTeacher.build_small(TINY_TEACHER).save_pretrained(teacher, "1.0")
    result = _run(
        "train", "student", "--data", str(cache), "--out", str(tmp_path / "student"), "--teacher", str(teacher),
        "--steps", "4", "--batch-size", "4", "--set", "width=64", "--set", "layers=2",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "teacher outputs log_a" in result.stdout and "constant marginal" in result.stdout
    student = tmp_path / "student" / "student_v1.0"
    described = json.loads(student.with_name("student_v1.0.json").read_text())
    assert (described["config"]["width"], described["config"]["layers"]) == (64, 2)
    again = ["train", "student", "--data", str(cache), "--out", str(tmp_path / "student"), "--teacher", str(teacher)]
    refused = _run(*again, "--steps", "6", "--batch-size", "4")
    assert refused.returncode == 2 and "--resume" in refused.stderr  # never silently overwrites a run
    other = _run(*again, "--steps", "6", "--batch-size", "4", "--resume")  # the default width, 128
    assert other.returncode == 2 and "Traceback" not in other.stderr
    assert "another configuration" in other.stderr and "width: 64 != 128" in other.stderr
    again += ["--set", "width=64", "--set", "layers=2"]
    resumed = _run(*again, "--steps", "6", "--batch-size", "4", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    steps = [json.loads(line)["step"] for line in (tmp_path / "student" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [4, 6]  # continued from the step-4 checkpoint, not from 0
    assert described["config"]["embedding_dim"] == 24  # follows the teacher's hidden size
    # --set changes the ablation's configuration; evaluation builds each planner from its own.
    for name, extra in (
        ("planner0", ["--latent-dropout", "0.25"]),
        ("planner1", ["--no-fusion", "--set", "decoder_layers=1"]),
    ):
        result = _run(
            "train", "planner", "--data", str(cache), "--out", str(tmp_path / name),
            "--student", str(student), "--steps", "4", "--batch-size", "4", *extra,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert "ade_4s" in result.stdout
    described = json.loads((tmp_path / "planner1" / "planner_nofusion_v1.0.json").read_text())
    assert described["config"]["decoder_layers"] == 1
    assert described["training"]["latent_dropout"] == 0.0  # nothing to drop: its JSON says so, not the default
    fused = json.loads((tmp_path / "planner0" / "planner_v1.0.json").read_text())
    assert fused["training"]["latent_dropout"] == 0.25  # the option, not the recipe's 0.5
    refused = _run(
        "train", "planner", "--data", str(cache), "--out", str(tmp_path / "p"), "--no-fusion", "--set", "width=102"
    )
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "must be a multiple of heads" in refused.stderr and not (tmp_path / "p").exists()
    result = _run(
        "eval", "student", "--data", str(cache), "--student", str(student), "--teacher", str(teacher),
        "--json", str(tmp_path / "student.json"), "--against", str(student),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "student.json").read_text())
    assert 0.0 <= report["student_top1_agreement"] <= 1.0 and report["student_kl"] >= 0.0
    bands = report["student_top1_agreement_by_teacher_confidence"]
    assert sum(band["fraction"] for band in bands) == pytest.approx(1.0, abs=1e-3)
    assert "teacher top probability 0.0-0.3" in result.stdout
    low, high = report["student_top1_agreement_interval_95"]  # two logs: blocks to resample
    assert low <= report["student_top1_agreement"] <= high and "block bootstrap interval" in result.stdout
    paired = report["agreement_minus_against"]  # against itself: nothing between them
    assert paired["difference"] == 0.0 and paired["interval_95"] == [0.0, 0.0] and "minus --against" in result.stdout
    result = _run(
        "eval", "planner", "--data", str(cache), "--student", str(student), "--teacher", str(teacher),
        "--planner", str(tmp_path / "planner0" / "planner_v1.0"),
        "--no-fusion-planner", str(tmp_path / "planner1" / "planner_nofusion_v1.0"),
        "--json", str(tmp_path / "planner.json"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = json.loads((tmp_path / "planner.json").read_text())["planners"]
    expected = {"constant_velocity", "constant_mean_trajectory", "latentvla_student", "latentvla_teacher",
                "latentvla_shuffled_latents", "no_fusion"}  # fmt: skip
    assert set(rows) == expected
    # The test cache drives straight at 10 m/s: constant velocity is exact.
    assert rows["constant_velocity"]["ade_4s"] == pytest.approx(0.0, abs=1e-6)
    assert rows["latentvla_student"]["ade_4s"] > 0.0
    for row in rows.values():  # two logs of 80 frames: blocks to resample
        low, high = row["ade_4s_interval_95"]
        assert low - 1e-6 <= row["ade_4s"] <= high + 1e-6  # float32 errors, float64 resamples
    paired = json.loads((tmp_path / "planner.json").read_text())["paired_ade_4s"]
    assert set(paired) == {
        "student_minus_no_fusion", "student_minus_half_constant_velocity", "student_minus_shuffled_latents",
        "teacher_minus_student",
    }  # fmt: skip
    # Constant velocity is exact here, so the planner minus half of it is the planner's own ADE.
    half = paired["student_minus_half_constant_velocity"]
    assert half["difference"] == pytest.approx(rows["latentvla_student"]["ade_4s"], rel=1e-6)
    assert "student_minus_no_fusion" in result.stdout and "ADE@4s 95 %" in result.stdout
    report = json.loads((tmp_path / "planner.json").read_text())
    by_log = report["ade_4s_by_log"]
    assert len(by_log) == 2 and all(f"{log} (" in result.stdout for log in by_log)
    # The logs' sample-weighted means are the whole set's ADE@4s, planner by planner.
    samples = sum(row["samples"] for row in by_log.values())
    assert samples == report["samples"]
    for planner in expected:
        pooled = sum(row["samples"] * row[planner] for row in by_log.values()) / samples
        assert pooled == pytest.approx(rows[planner]["ade_4s"], rel=1e-5, abs=1e-6)
    # Headroom of the ablation's error; the cache has no labels, so the LAM labels it in memory.
    from latentvla_ros.models.checkpoint import save_model
    from latentvla_ros.models.latent_action import LatentActionConfig, LatentActionModel

    lam = LatentActionModel(LatentActionConfig())
    save_model(lam, lam.config.to_dict(), tmp_path / "lam", "latent_action_model", "2.0")
    heldout = Path(shutil.copytree(cache, tmp_path / "heldout"))  # its own path; the teacher's answers in it
    refused = _run("eval", "headroom", "--data", str(cache), "--train-data", str(cache), "--student", str(student))
    assert refused.returncode == 2 and "Traceback" not in refused.stderr and "must hold other logs" in refused.stderr
    headroom = [
        "eval", "headroom", "--data", str(heldout), "--train-data", str(cache), "--student", str(student),
        "--planner", str(tmp_path / "planner1" / "planner_nofusion_v1.0"), "--lam", str(tmp_path / "lam"),
        "--json", str(tmp_path / "headroom.json"),
    ]  # fmt: skip
    result = _run(*headroom)
    assert result.returncode == 0, result.stderr
    room = json.loads((tmp_path / "headroom.json").read_text())
    assert set(room["sets"]) == {"control", "student", "teacher", "scene", "future_tokens"}
    assert all(f"\n{name} " in result.stdout for name in room["sets"])
    assert room["sets"]["future_tokens"]["features"] == room["sets"]["control"]["features"] + 12 * 16
    # Held out: both entries of the one log; training: its "train" entry. Only frames with 12
    # future tokens (3.6 s ahead in the log) count, the same samples in every set.
    assert 0 < room["train_samples"] < 65 and room["samples"] == 2 * room["train_samples"]
    assert room["fde_4s"] > 0.0 and not (heldout / "log_a" / "latent_labels.npz").exists()
    (heldout / "log_a" / "teacher_outputs.npz").unlink()  # a set missing on one side: left out, said so
    result = _run(*headroom[:-2], "--json", str(tmp_path / "without_teacher.json"))
    assert result.returncode == 0, result.stderr
    assert "--data: not every log holds the teacher's answers, so no 'teacher' set" in result.stdout
    assert "teacher" not in json.loads((tmp_path / "without_teacher.json").read_text())["sets"]


def test_train_planner_fusion_without_a_student_is_one_clear_error(tmp_path):
    cache = write_cache(tmp_path / "cache")
    result = _run(
        "train", "planner", "--data", str(cache), "--out", str(tmp_path / "p"), "--student", str(tmp_path / "none")
    )
    assert result.returncode == 2
    assert "error:" in result.stderr and "Traceback" not in result.stderr


def test_train_student_refuses_a_negative_weight_before_any_teacher_answer(tmp_path):
    cache = write_cache(tmp_path / "cache")
    result = _run(
        "train", "student", "--data", str(cache), "--out", str(tmp_path / "s"),
        "--teacher", str(tmp_path / "no_teacher"), "--hard-label-weight", "-1",
    )  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "hard_label_weight must be a finite number >= 0" in result.stderr  # not the missing teacher
    assert not list((cache / "log_a").glob("teacher_outputs*")) and not (tmp_path / "s").exists()
    for assignment, message in (("width=102", "must be a multiple of heads"), ("depth=2", "KEY one of")):
        result = _run(
            "train", "student", "--data", str(cache), "--out", str(tmp_path / "s"),
            "--teacher", str(tmp_path / "no_teacher"), "--set", assignment,
        )  # fmt: skip
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert message in result.stderr
    assert not list((cache / "log_a").glob("teacher_outputs*")) and not (tmp_path / "s").exists()


def test_training_commands_default_to_the_training_configs():
    """The CLI's step counts are the recipe's (make train passes none): one source of truth."""
    from latentvla_ros.cli import build_parser
    from latentvla_ros.training.lam_stages import LamTrainingConfig
    from latentvla_ros.training.teacher_stage import TeacherTrainingConfig

    parser = build_parser()
    common = ["--data", "cache", "--out", "run"]
    student = parser.parse_args(["train", "student", *common])
    recipe = StudentTrainingConfig()
    assert (student.steps, student.lam_weight, student.hard_label_weight, student.temperature) == (
        recipe.steps, recipe.lam_weight, recipe.hard_label_weight, recipe.temperature,
    )  # fmt: skip
    assert parser.parse_args(["train", "teacher", *common]).steps == TeacherTrainingConfig().steps
    planner = parser.parse_args(["train", "planner", *common])
    recipe = PlannerTrainingConfig()
    assert (planner.steps, planner.position_loss, planner.bev_weight, planner.latent_dropout) == (
        recipe.steps, recipe.position_loss, recipe.bev_weight, recipe.latent_dropout,
    )  # fmt: skip
    for kind in POSITION_LOSSES:  # the CLI lists them itself, so parsing imports no torch
        assert parser.parse_args(["train", "planner", *common, "--position-loss", kind]).position_loss == kind
    lam = parser.parse_args(["train", "lam", *common])
    assert (lam.stage1_steps, lam.stage2_steps) == (LamTrainingConfig().stage1_steps, LamTrainingConfig().stage2_steps)


def test_missing_teacher_outputs_name_commands_that_exist(tmp_path):
    """The error a cache without teacher answers raises names commands the CLI really has
    (it once named a `latentvla distill` that never existed)."""
    import re

    from latentvla_ros.cli import build_parser
    from latentvla_ros.models.teacher.teacher_features import MissingLabelsError
    from latentvla_ros.models.teacher.teacher_targets import require_teacher_targets

    with pytest.raises(MissingLabelsError, match="no teacher outputs") as refused:
        require_teacher_targets(tmp_path)
    commands = re.findall(r"`latentvla ([^` ]+) ([^` ]+)", str(refused.value))
    assert ("train", "student") in commands
    parser = build_parser()
    extra = {"train": ["--out", "run"]}
    for command, model in commands:  # argparse exits on an unknown subcommand
        parsed = parser.parse_args([command, model, "--data", "cache", "--teacher", "t", *extra.get(command, [])])
        assert (parsed.command, getattr(parsed, "model", None) or parsed.model_kind) == (command, model)
