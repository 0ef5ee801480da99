"""The latent action model on tiny configurations: shapes, VQ, stages, files, training."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from latentvla_ros.evaluation.latent_action_evaluation import gloss_name, normalized_mutual_information
from latentvla_ros.models.checkpoint import (
    CheckpointError,
    load_weights,
    read_description,
    require_same_config,
    save_model,
)
from latentvla_ros.models.latent_action import LatentActionConfig, LatentActionModel, VectorQuantizerEMA
from latentvla_ros.models.latent_action_features import LamDataset, LamWindows, maneuver_labels
from latentvla_ros.models.latent_action_loading import load_latent_action_model

TINY = LatentActionConfig(
    frame_height=16, frame_width=32, encoder_channels=(8, 8), decoder_channels=(8, 16), latent_dim=8, conditioning_dim=8
)


def _batch(config: LatentActionConfig, size: int = 6, seed: int = 0) -> dict:
    generator = torch.Generator().manual_seed(seed)
    return {
        "frames": torch.rand(
            size, config.history_frames + 2, 3, config.frame_height, config.frame_width, generator=generator
        ),
        "ego_motion": torch.randn(size, 3, generator=generator),
        "ego_state": torch.randn(size, 5, generator=generator),
    }


@pytest.mark.parametrize("stage", [1, 2])
def test_shapes_per_stage(stage):
    model = LatentActionModel(TINY).train()
    output = model(_batch(TINY), stage)
    assert output.prediction.shape == (6, 3, 16, 32)
    assert output.environment.tokens.shape == (6,) and output.environment.tokens.max() < 16
    if stage == 1:
        assert output.ego is None
        assert set(output.losses) == {"environment_commitment", "environment_adversary", "reconstruction"}
    else:
        assert output.ego.tokens.shape == (6,) and set(output.losses) == {"ego_commitment", "reconstruction"}
    ego, environment = model.eval().tokens(_batch(TINY))
    assert ego.shape == environment.shape == (6,)


def test_untrained_decoder_predicts_the_copy_of_frame_t():
    model = LatentActionModel(TINY).eval()
    batch = _batch(TINY)
    output = model(batch, 2)
    # A tiny residual (not zero, so gradients flow from the first step) on top of frame t.
    torch.testing.assert_close(output.prediction, batch["frames"][:, -2], atol=5e-3, rtol=0.0)


def test_vq_straight_through_gradient_reaches_the_encoder_output():
    quantizer = VectorQuantizerEMA(4, 3, decay=0.99, commitment_weight=0.05, dead_threshold=0.02).eval()
    latent = torch.randn(5, 3, requires_grad=True)
    quantized = quantizer(latent)
    # Forward: exactly the chosen codes.
    torch.testing.assert_close(quantized.embedding, quantizer.codebook[quantized.tokens])
    # Backward: straight through the quantization, i.e. exactly the gradient of the L2
    # normalization the quantizer applies to the encoder output.
    weights = torch.arange(3.0)
    (quantized.embedding * weights).sum().backward()
    reference = latent.detach().clone().requires_grad_(True)
    (torch.nn.functional.normalize(reference, dim=1) * weights).sum().backward()
    torch.testing.assert_close(latent.grad, reference.grad)
    assert latent.grad.abs().sum() > 0


def test_vq_ema_moves_codes_and_restarts_dead_ones():
    torch.manual_seed(0)
    quantizer = VectorQuantizerEMA(8, 2, decay=0.5, commitment_weight=0.05, dead_threshold=0.5).train()
    data = torch.randn(64, 2) + torch.tensor([5.0, 5.0])
    for _ in range(30):
        tokens = quantizer(data).tokens
    # After initialization, EMA updates and restarts, codes sit among the (normalized) data
    # and several are used.
    directions = torch.nn.functional.normalize(data, dim=1)
    assert torch.cdist(quantizer.codebook, directions).min(dim=1).values.max() < 0.3
    assert len(torch.unique(tokens)) >= 4


def test_environment_codebook_is_frozen_in_stage_two():
    model = LatentActionModel(TINY).train()
    model(_batch(TINY), 1)  # initializes and updates the environment codebook
    model.freeze_environment()
    codebook_before = model.environment_codebook.codebook.clone()
    frozen = [p.clone() for p in model.environment_encoder.parameters()]
    optimizer = torch.optim.SGD(model.stage_parameters(2), lr=0.1)
    for seed in range(3):
        output = model(_batch(TINY, seed=seed), 2)
        optimizer.zero_grad()
        output.loss.backward()
        optimizer.step()
    torch.testing.assert_close(model.environment_codebook.codebook, codebook_before)
    for before, after in zip(frozen, model.environment_encoder.parameters(), strict=True):
        torch.testing.assert_close(before, after)
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in model.environment_encoder.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.ego_encoder.parameters())


def test_safetensors_round_trip_and_config_checks(tmp_path):
    model = LatentActionModel(TINY).train()
    model(_batch(TINY), 1)
    stem = tmp_path / "lam_v1.0"
    save_model(model, TINY.to_dict(), stem, "latent_action_model", "1.0", {"step_s": 0.3})
    assert (tmp_path / "lam_v1.0.safetensors").is_file() and (tmp_path / "lam_v1.0.json").is_file()
    loaded, description = load_latent_action_model(stem)
    assert description["version"] == "1.0" and loaded.config == TINY
    for key, value in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value)
    with pytest.raises(CheckpointError, match="a 'latent_action_model' model, expected 'planner'"):
        read_description(stem, "planner")
    other = LatentActionModel(
        LatentActionConfig(
            frame_height=24,
            frame_width=48,
            encoder_channels=(8, 8),
            decoder_channels=(8, 16),
            latent_dim=8,
            conditioning_dim=8,
        )
    )
    with pytest.raises(CheckpointError, match="weights do not fit"):
        load_weights(other, stem)
    with pytest.raises(CheckpointError, match=r"another configuration \(frame_height: 16 != 24"):
        require_same_config(TINY.to_dict(), {**TINY.to_dict(), "frame_height": 24}, "checkpoint")


def test_tiny_model_overfits_a_batch():
    torch.manual_seed(0)
    model = LatentActionModel(TINY).train()
    batch = _batch(TINY, size=8)
    # Make frame t+1 a shifted frame t, a motion the decoder can learn.
    batch["frames"][:, -1] = torch.roll(batch["frames"][:, -2], shifts=1, dims=-1)
    optimizer = torch.optim.Adam(model.stage_parameters(1), lr=3e-3)
    losses = []
    for _ in range(60):
        output = model(batch, 1)
        optimizer.zero_grad()
        output.loss.backward()
        optimizer.step()
        losses.append(float(output.reconstruction_loss))
    assert losses[-1] < 0.6 * losses[0], (losses[0], losses[-1])


def test_nmi_and_glosses():
    labels = np.array([0, 0, 1, 1, 2, 2] * 10)
    assert normalized_mutual_information(labels, labels) == pytest.approx(1.0)
    assert normalized_mutual_information(labels, (labels + 1) % 3) == pytest.approx(1.0)  # renaming does not matter
    assert normalized_mutual_information(labels, np.zeros_like(labels)) == 0.0
    independent = normalized_mutual_information(np.repeat([0, 1], 30), np.tile([0, 1], 30))
    assert independent == pytest.approx(0.0, abs=1e-9)
    assert gloss_name(-3.0, 0.0) == "hard brake"
    assert gloss_name(0.0, 0.1) == "gentle left"
    assert gloss_name(1.0, -0.4) == "accelerate, sharp right"
    assert maneuver_labels(np.array([-1.0, 0.0, 1.0]), np.array([0.1, 0.0, -0.1])).tolist() == [2, 4, 6]


def _tiny_windows(count: int = 40) -> LamWindows:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, size=(count + 2, 16, 32, 3), dtype=np.uint8)
    indices = np.stack([np.arange(count), np.arange(count) + 1, np.arange(count) + 2], axis=1)
    return LamWindows(
        frames=frames,
        indices=indices,
        ego_motion=rng.normal(size=(count, 3)).astype(np.float32),
        ego_state=rng.normal(size=(count, 5)).astype(np.float32),
        maneuver=rng.integers(0, 9, count),
        acceleration=rng.normal(size=count).astype(np.float32),
        yaw_rate=rng.normal(size=count).astype(np.float32) * 0.1,
        log=np.zeros(count, dtype=int),
        step_s=0.3,
        frame_t=np.arange(count) + 1,
    )


def test_dataset_items_are_float_frames_in_unit_range():
    item = LamDataset(_tiny_windows())[3]
    assert item["frames"].shape == (3, 3, 16, 32) and item["frames"].dtype == torch.float32
    assert 0.0 <= float(item["frames"].min()) and float(item["frames"].max()) <= 1.0


def _write_cache(root: Path, frame_shape=(64, 128), period_ns=100_000_000, frames=60) -> Path:
    """A minimal dataset cache as `latentvla dataset` writes it."""
    log = root / "log_a"
    log.mkdir(parents=True)
    rng = np.random.default_rng(1)
    np.save(log / "frames.npy", rng.integers(0, 255, size=(frames, *frame_shape, 3), dtype=np.uint8))
    stamps = np.arange(frames, dtype=np.int64) * period_ns
    poses = np.column_stack([np.arange(frames) * 1.0, np.zeros(frames), np.zeros(frames)])
    status = np.tile(np.array([10.0, 0, 0, 0, 0], dtype=np.float32), (frames, 1))
    np.savez(
        log / "samples.npz",
        frame_stamps_ns=stamps,
        frame_poses=poses,
        frame_ego_status=status,
        frame_segment=np.zeros(frames, dtype=np.int32),
        stamps_ns=stamps[:1],
    )
    (log / "meta.json").write_text(json.dumps({"cache_version": 2, "frame_shape": [*frame_shape, 3], "samples": 1}))
    (root / "dataset.json").write_text(
        json.dumps(
            {
                "logs": [
                    {"name": "log_a", "split": "train", "samples": 1},
                    {"name": "log_a", "split": "val", "samples": 1},
                ]
            }
        )
    )
    return root


LATENTVLA = Path(sys.executable).parent / "latentvla"


def _train(data: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            str(LATENTVLA),
            "train",
            "lam",
            "--data",
            str(data),
            "--out",
            str(out),
            "--stage1-steps",
            "2",
            "--stage2-steps",
            "2",
            "--batch-size",
            "4",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_training_refuses_data_of_another_frame_shape_or_rate(tmp_path):
    square = _write_cache(tmp_path / "square", frame_shape=(64, 64))
    result = _train(square, tmp_path / "run")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "frames are 64x64 (aspect 1.00); the model is configured for 64x32 (aspect 2.00)" in result.stderr
    fast = _write_cache(tmp_path / "fast", period_ns=50_000_000)
    result = _train(fast, tmp_path / "run")
    assert result.returncode == 2 and "camera frames every 0.050 s" in result.stderr


@pytest.mark.slow
def test_training_writes_model_and_resumes_only_the_same_config(tmp_path):
    data = _write_cache(tmp_path / "cache")
    first = _train(data, tmp_path / "run")
    assert first.returncode == 0, first.stderr[-2000:]
    out = tmp_path / "run"
    for name in (
        "lam_v1.0.safetensors",
        "lam_v1.0.json",
        "lam_v1.0_gloss.json",
        "lam_eval.json",
        "lam_codes.png",
        "metrics.jsonl",
    ):
        assert (out / name).is_file(), name
    report = json.loads((out / "lam_eval.json").read_text())
    assert {"recon_improvement_vs_copy", "ego_codes_used", "env_codes_used", "ego_nmi", "env_nmi"} <= set(report)
    stages = [json.loads(line)["stage"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert stages == ["stage1_environment", "stage2_ego"]
    again = _train(data, out)
    assert again.returncode == 2 and "pass --resume" in again.stderr
    resumed = _train(data, out, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    # A checkpoint of another configuration is refused with one clear message.
    description = json.loads((out / "lam_checkpoint.json").read_text())
    description["config"]["latent_dim"] = 99
    (out / "lam_checkpoint.json").write_text(json.dumps(description))
    mismatched = _train(data, out, "--resume")
    assert mismatched.returncode == 2 and "another configuration (latent_dim: 99 != 32)" in mismatched.stderr


@pytest.mark.slow
def test_training_runs_unchanged_under_torchrun(tmp_path):
    """The GPU path's code on two CPU processes: torchrun + gloo DistributedDataParallel."""
    data = _write_cache(tmp_path / "cache")
    torchrun = Path(sys.executable).parent / "torchrun"
    result = subprocess.run(
        [
            str(torchrun), "--standalone", "--nproc_per_node", "2",
            "-m", "latentvla_ros.cli", "train", "lam", "--data", str(data), "--out", str(tmp_path / "run"),
            "--stage1-steps", "2", "--stage2-steps", "2", "--batch-size", "4",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert (tmp_path / "run" / "lam_v1.0.safetensors").is_file()
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["stage"] for line in lines] == ["stage1_environment", "stage2_ego"]  # rank 0 only


SHIPPED = Path(__file__).resolve().parents[1] / "models" / "lam_v1.0"


def test_shipped_weights_load_and_evaluate(tmp_path):
    """The shipped model loads through the same code a user's weights do, and `latentvla eval lam`
    uses it by default."""
    model, description = load_latent_action_model(SHIPPED)
    assert description["version"] == "1.0" and model.config.codebook_size == 16
    assert len(description["glosses"]) == 16 and all("name" in gloss for gloss in description["glosses"])
    data = _write_cache(tmp_path / "cache")
    result = subprocess.run(
        [str(LATENTVLA), "eval", "lam", "--data", str(data), "--json", str(tmp_path / "lam.json")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((tmp_path / "lam.json").read_text())
    assert report["model_version"] == "1.0"
    for key in ("recon_improvement_vs_copy", "ego_codes_used", "env_codes_used", "ego_nmi", "env_nmi"):
        assert key in report
    assert (tmp_path / "lam.png").stat().st_size > 1000
