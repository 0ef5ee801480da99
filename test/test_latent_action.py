"""The latent action model on tiny configurations: shapes, VQ, stages, files, training."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.lam_cache import write_cache as _write_cache

from latentvla_ros.evaluation.latent_action_evaluation import (
    StageReconstruction,
    adjusted_mutual_information,
    evaluate_lam,
    gloss_name,
    linear_probe_r2,
    probe_halves,
)
from latentvla_ros.models.checkpoint import (
    CheckpointError,
    load_weights,
    read_description,
    require_same_config,
    save_model,
)
from latentvla_ros.models.latent_action import LatentActionConfig, LatentActionModel, VectorQuantizerEMA
from latentvla_ros.models.latent_action_features import (
    LamDataset,
    LamWindows,
    agent_motion_labels,
    load_windows,
    maneuver_labels,
)
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
        expected = {
            "environment_commitment",
            "environment_diversity",
            "environment_adversary",
            "environment_confusion",
            "reconstruction",
        }
        assert set(output.losses) == expected
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


@pytest.mark.parametrize("geometry", ["shift_zoom", "ground_plane"])
def test_warp_only_ego_action_moves_the_picture_and_nothing_else(geometry):
    """With ego_action_warp_only the ego code reaches the stage-2 decoder only as the global
    warp: another ego code changes the prediction, unless the warp is switched off."""
    from dataclasses import replace

    config = replace(TINY, ego_action_warp_only=True, ego_warp_geometry=geometry)
    model = LatentActionModel(config).eval()
    torch.nn.init.normal_(model.stage2_decoder.out.weight, std=0.1)  # a visible residual
    torch.nn.init.normal_(model.stage2_decoder.warp.weight, std=0.5)
    batch = _batch(config)
    current = batch["frames"][:, -2]
    environment = torch.randn(6, config.latent_dim)
    codes = model.ego_codebook.codebook
    first = model.stage2_predict(current, environment, codes[0].expand(6, -1), batch)
    second = model.stage2_predict(current, environment, codes[1].expand(6, -1), batch)
    assert (first - second).abs().max() > 1e-3
    torch.nn.init.zeros_(model.stage2_decoder.warp.weight)
    first = model.stage2_predict(current, environment, codes[0].expand(6, -1), batch)
    second = model.stage2_predict(current, environment, codes[1].expand(6, -1), batch)
    torch.testing.assert_close(first, second)
    with pytest.raises(ValueError, match="needs ego_decoder_warp"):
        replace(config, ego_decoder_warp=False)
    with pytest.raises(ValueError, match="ego_warp_geometry must be one of shift_zoom, ground_plane, got 'fisheye'"):
        replace(config, ego_warp_geometry="fisheye")


def test_ground_plane_warp_turns_a_rendered_frame_into_the_next_one():
    """The simulator's camera renders the road from two poses: frame t warped by the true
    planar motion matches frame t+1 far better than the copy or the mirrored motion, and the
    IDM's cost volume is lowest at the true yaw."""
    import cv2

    from latentvla_ros.models.latent_action import GroundPlaneWarp, MotionCostVolume
    from latentvla_ros.simulation.camera import CameraConfig, CameraRenderer
    from latentvla_ros.simulation.map_raster import rasterize_road
    from latentvla_ros.simulation.scenarios import build_road_network

    camera = CameraRenderer(CameraConfig(), rasterize_road(build_road_network("intersection")))
    config = LatentActionConfig()
    warp, volume = GroundPlaneWarp(config), MotionCostVolume(config)

    def frame(pose) -> torch.Tensor:
        image = cv2.resize(camera.render(np.asarray(pose), []), (64, 32), interpolation=cv2.INTER_AREA)
        return torch.from_numpy(image).permute(2, 0, 1).float()[None] / 255.0

    x, y, yaw = 2.0, -40.0, np.pi / 2 + 0.05
    for dx, dy, dyaw in ((6.0, 0.0, 0.06), (6.0, 0.0, -0.05), (3.0, 0.0, 0.1), (6.0, 0.4, -0.05)):
        before = frame((x, y, yaw))
        after = frame((x + dx * np.cos(yaw) - dy * np.sin(yaw), y + dx * np.sin(yaw) + dy * np.cos(yaw), yaw + dyaw))

        def error(motion, before=before, after=after) -> float:
            return float(((warp(before, torch.tensor([motion], dtype=torch.float32)) - after) ** 2).mean())

        copy = float(((before - after) ** 2).mean())
        assert error((0.0, 0.0, 0.0)) == pytest.approx(copy, rel=1e-4)  # no motion: the copy
        assert error((dx, dy, dyaw)) < 0.65 * copy
        assert error((dx, dy, dyaw)) < 0.7 * error((dx, -dy, -dyaw))
        if dy == 0.0:  # the IDM's cost volume (forward at the speed, yaw candidates): lowest at the yaw
            costs = volume(before, after, torch.tensor([dx / config.step_s]))[0]
            assert abs(float(volume.candidates[int(costs.argmin()), 1]) - dyaw) <= 0.0125 + 1e-6


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


def test_ego_dead_code_threshold_is_the_ego_codebooks_own_and_zero_lets_an_unused_code_die():
    from dataclasses import replace

    model = LatentActionModel(replace(TINY, ego_dead_code_threshold=0.0))
    assert model.ego_codebook.dead_threshold == 0.0
    assert model.environment_codebook.dead_threshold == TINY.dead_code_threshold > 0.0
    for name in ("dead_code_threshold", "ego_dead_code_threshold"):
        with pytest.raises(ValueError, match=f"{name} must be a finite number >= 0"):
            replace(TINY, **{name: float("nan")})
    away = torch.tensor([-1.0, 0.0])  # opposite the data: no window picks this code
    data = torch.randn(64, 2, generator=torch.Generator().manual_seed(0)) * 0.1 + torch.tensor([5.0, 5.0])
    directions = torch.nn.functional.normalize(data, dim=1)
    for threshold, restarted in ((0.5, True), (0.0, False)):
        quantizer = VectorQuantizerEMA(4, 2, decay=0.5, commitment_weight=0.05, dead_threshold=threshold).train()
        quantizer(data)  # initialized at data rows
        quantizer.codebook[3] = away
        quantizer.ema_sum[3] = away
        for _ in range(30):
            quantizer(data)
        nearest = torch.cdist(quantizer.codebook[3:], directions).min().item()
        assert (nearest < 0.3) is restarted, (threshold, quantizer.codebook[3])


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
        losses.append(float(output.reconstruction_loss.detach()))
    assert losses[-1] < 0.6 * losses[0], (losses[0], losses[-1])


def test_ami_is_chance_corrected_and_glosses_name_codes():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 600)
    assert adjusted_mutual_information(labels, labels) == pytest.approx(1.0)
    assert adjusted_mutual_information(labels, (labels + 1) % 3) == pytest.approx(1.0)  # renaming does not matter
    assert adjusted_mutual_information(np.zeros_like(labels), labels) == pytest.approx(0.0)  # one code: nothing
    assert adjusted_mutual_information(labels, np.zeros_like(labels)) is None  # nothing to explain
    assert adjusted_mutual_information(np.zeros_like(labels), np.zeros_like(labels)) is None  # sklearn: 1.0
    # Independent labels with many values: NMI would report a positive number, AMI about 0.
    assert abs(adjusted_mutual_information(rng.integers(0, 16, 600), rng.integers(0, 9, 600))) < 0.02
    assert gloss_name(-3.0, 0.0) == "hard brake"
    assert gloss_name(0.0, 0.1) == "gentle left"
    assert gloss_name(1.0, -0.4) == "accelerate, sharp right"
    assert maneuver_labels(np.array([-1.0, 0.0, 1.0]), np.array([0.1, 0.0, -0.1])).tolist() == [2, 4, 6]
    nearest = np.array([[np.nan] * 4, [20.0, 1.0, -3.0, 0.0], [15.0, -2.0, 0.0, 1.0], [np.nan] * 4])
    # unknown, none in view, closing + straight = 1 + 3*0 + 1, steady + moving left = 1 + 3*1 + 2
    assert agent_motion_labels(np.array([-1, 1, 2, 0]), nearest).tolist() == [-1, 2, 6, 0]


def test_probe_and_action_gain_arithmetic():
    tokens = np.repeat(np.arange(4), 50)
    log = np.tile([0, 1], 100)
    fit, score = probe_halves(log)
    assert fit.sum() == score.sum() == 100 and not (fit & score).any()
    informative = {"exact": tokens * 0.5, "noise": np.random.default_rng(0).normal(size=200)}
    r2 = linear_probe_r2(tokens, informative, log, size=16)
    assert r2["exact"] == pytest.approx(1.0, abs=1e-2) and r2["noise"] < 0.05
    numbers = StageReconstruction(inferred=0.8, shuffled=1.1, per_constant=np.array([1.2, 1.0, 1.5])).report(2.0)
    assert numbers["best_constant_code"] == 1 and numbers["action_gain_vs_constant"] == pytest.approx(0.2)
    assert numbers["shuffled_gain_vs_constant"] == pytest.approx(-0.1)
    assert numbers["recon_improvement_vs_copy"] == pytest.approx(0.6)


@pytest.mark.parametrize("name", ["environment", "ego_speed"])
def test_adversary_learns_on_detached_latents_and_confusion_trains_only_the_encoder(name):
    from dataclasses import replace

    model = LatentActionModel(replace(TINY, ego_speed_adversary_weight=0.5)).train()
    adversary = model.environment_adversary if name == "environment" else model.ego_speed_adversary
    target = torch.randn(6, 8 if name == "environment" else 1)
    latent = torch.randn(6, TINY.latent_dim, requires_grad=True)
    losses = model._adversary_losses(name, adversary, 0.5, latent, target)
    parameters = list(adversary.parameters())
    losses[f"{name}_adversary"].backward(retain_graph=True)
    assert latent.grad is None and all(p.grad is not None for p in parameters)
    for p in parameters:
        p.grad = None
    losses[f"{name}_confusion"].backward()
    assert latent.grad.abs().sum() > 0 and all(p.grad is None for p in parameters)


def test_ego_speed_adversary_is_stage_two_only_and_off_by_default():
    """Off: no module, so models saved before it load unchanged. On: stage 2 trains it
    beside the ego encoder (its losses in the stage-2 set), stage 1 neither sees nor trains it."""
    from dataclasses import replace

    assert LatentActionModel(TINY).ego_speed_adversary is None
    model = LatentActionModel(replace(TINY, ego_speed_adversary_weight=0.5)).train()
    adversary = set(model.ego_speed_adversary.parameters())
    assert adversary <= set(model.stage_parameters(2)) and not adversary & set(model.stage_parameters(1))
    assert {"ego_speed_adversary", "ego_speed_confusion"} <= set(model(_batch(TINY), 2).losses)
    assert not any(name.startswith("ego_speed") for name in model(_batch(TINY), 1).losses)
    with pytest.raises(ValueError, match="ego_speed_adversary_weight"):
        replace(TINY, ego_speed_adversary_weight=-1.0)


def test_recalibrated_norm_holds_the_exact_statistics_of_the_final_weights():
    torch.manual_seed(0)
    model = LatentActionModel(TINY).train()
    batches = [_batch(TINY, size=8, seed=seed) for seed in range(3)]
    model(batches[0], 1)  # initializes the codebook
    codebook = model.environment_codebook.codebook.clone()
    model.recalibrate_norm(batches, stage=1)
    with torch.no_grad():
        pre = torch.cat([
            model.environment_head[:-1](torch.cat([
                model.environment_encoder(model.idm_input(b["frames"])),
                model.ego_conditioning(torch.cat([b["ego_motion"], b["ego_state"]], dim=1)),
            ], dim=1))
            for b in batches
        ])  # fmt: skip
    norm = model.stage_norm(1)
    # Cumulative average of the per-batch means (equal batch sizes: the overall mean).
    torch.testing.assert_close(norm.running_mean, pre.mean(dim=0), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(model.environment_codebook.codebook, codebook)  # codebooks untouched
    assert norm.momentum == 0.1 and model.training


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
        speed=rng.uniform(0, 20, count).astype(np.float32),
        speed_change=rng.normal(size=count).astype(np.float32),
        agents_motion=rng.integers(-1, 10, count),
        perturbed=rng.random(count) < 0.2,
        log_names=("tiny",),
    )


def test_dataset_items_are_float_frames_in_unit_range():
    item = LamDataset(_tiny_windows())[3]
    assert item["frames"].shape == (3, 3, 16, 32) and item["frames"].dtype == torch.float32
    assert 0.0 <= float(item["frames"].min()) and float(item["frames"].max()) <= 1.0


def test_labelling_tokens_are_the_full_forward_passes_tokens():
    """`latentvla label` runs only the encoders; its tokens are those of the full pass
    `eval lam` makes, with every option that changes what the encoders read switched on."""
    from dataclasses import replace

    from latentvla_ros.evaluation.latent_action_evaluation import predict
    from latentvla_ros.models.latent_action_labelling import infer_tokens

    config = replace(
        TINY,
        environment_ego_warp=True,
        ego_motion_cost_volume=True,
        ego_action_warp_only=True,
        ego_warp_geometry="ground_plane",
    )
    torch.manual_seed(0)
    model = LatentActionModel(config)
    model.train()  # infer_tokens must switch to eval mode itself, as predict does
    windows = _tiny_windows()
    ego, environment = infer_tokens(model, windows, batch_size=16)
    predictions = predict(model, windows, batch_size=16)
    assert ego.shape == environment.shape == (len(windows),)
    np.testing.assert_array_equal(ego, predictions.ego_tokens)
    np.testing.assert_array_equal(environment, predictions.environment_tokens)
    assert len(np.unique(ego)) > 1 and len(np.unique(environment)) > 1  # not a trivially equal constant


LATENTVLA = Path(sys.executable).parent / "latentvla"


def _run(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(LATENTVLA), *arguments], capture_output=True, text=True, timeout=600, check=False)


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
        "lam_v2.0.safetensors",
        "lam_v2.0.json",
        "lam_v2.0_gloss.json",
        "lam_eval.json",
        "lam_codes.png",
        "metrics.jsonl",
    ):
        assert (out / name).is_file(), name
    report = json.loads((out / "lam_eval.json").read_text())
    assert set(REPORT_KEYS) <= set(report) and report["glosses_source"] == "held-out logs"
    assert json.loads((out / "lam_v2.0.json").read_text())["sha256"]
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
    # Stage 2 alone on this run's stage 1, with another stage-2 decoder: stage 1 is kept bit for bit.
    variant = tmp_path / "ground_plane"
    reused = _train(
        data, variant, "--stage1-from", str(out / "lam_v2.0"), "--set", "ego_warp_geometry=ground_plane", "--seed", "1",
        "--cosine-decay",
    )  # fmt: skip
    assert reused.returncode == 0, reused.stderr[-2000:]
    recorded = json.loads((variant / "training_config.json").read_text())["training"]
    assert (recorded["seed"], recorded["cosine_decay"]) == (1, True)
    assert json.loads((out / "training_config.json").read_text())["training"]["cosine_decay"] is False
    stages = [json.loads(line)["stage"] for line in (variant / "metrics.jsonl").read_text().splitlines()]
    assert stages == ["stage2_ego"]
    first_model, _ = load_latent_action_model(out / "lam_v2.0")
    second_model, second = load_latent_action_model(variant / "lam_v2.0")
    assert second["config"]["ego_warp_geometry"] == "ground_plane"
    torch.testing.assert_close(
        first_model.environment_encoder.state_dict(), second_model.environment_encoder.state_dict(), rtol=0, atol=0
    )
    torch.testing.assert_close(first_model.environment_codebook.codebook, second_model.environment_codebook.codebook)
    refused = _train(data, tmp_path / "other", "--stage1-from", str(out / "lam_v2.0"), "--set", "latent_dim=16")
    assert refused.returncode == 2 and "its stage 1 was trained with other latent_dim" in refused.stderr


def test_lam_learning_rate_is_constant_by_default_and_decays_to_zero_with_cosine_decay():
    from latentvla_ros.training.lam_stages import LamTrainingConfig, lam_schedule

    constant = lam_schedule(2000, LamTrainingConfig())
    decaying = lam_schedule(2000, LamTrainingConfig(cosine_decay=True))
    for schedule in (constant, decaying):  # the same warm-up
        assert schedule.learning_rate_at(0) == pytest.approx(1e-3 / 50)
        assert schedule.learning_rate_at(49) == pytest.approx(1e-3)
    assert constant.learning_rate_at(1999) == pytest.approx(1e-3)
    assert decaying.learning_rate_at(1025) == pytest.approx(0.5e-3)  # half-way after warm-up
    assert decaying.learning_rate_at(1999) < 1e-8
    rates = [decaying.learning_rate_at(step) for step in range(50, 2000)]
    assert np.all(np.diff(rates) <= 0)


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
    assert (tmp_path / "run" / "lam_v2.0.safetensors").is_file()
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["stage"] for line in lines] == ["stage1_environment", "stage2_ego"]  # rank 0 only


REPORT_KEYS = (
    "recon_improvement_vs_copy",
    "action_gain_vs_constant",
    "stage1_environment",
    "stage2_ego",
    "ego_codes_used",
    "env_codes_used",
    "ego_perplexity",
    "env_perplexity",
    "ego_collapsed",
    "env_collapsed",
    "ego_ami_maneuver",
    "env_ami_agents",
    "env_ami_maneuver",
    "ego_ami_agents",
    "probe_r2_yaw_rate",
    "probe_r2_speed_change",
    "probe_r2_speed",
)


@pytest.mark.slow
def test_collapse_guard_stops_training_with_one_message(tmp_path):
    """Frames that never change can only give one code: the guard must fire, not ship it."""
    data = _write_cache(tmp_path / "cache", constant=True)
    result = _train(data, tmp_path / "run", "--evaluate-every", "2", "--collapse-warmup-steps", "2")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert "stage1_environment step 2: the environment codebook collapsed (held-out perplexity 1.00 < 2" in (
        result.stderr
    )
    logged = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert logged["env_perplexity"] == pytest.approx(1.0) and logged["env_codes_used"] == 1
    assert not (tmp_path / "run" / "lam_v2.0.json").exists()  # nothing shipped


def _collapsed_model(stem: Path) -> Path:
    """A model whose environment codebook holds one code sixteen times."""
    model = LatentActionModel(LatentActionConfig())
    model.environment_codebook.codebook[:] = model.environment_codebook.codebook[3]
    save_model(model, model.config.to_dict(), stem, "latent_action_model", "2.0")
    return stem


def test_eval_lam_fails_on_a_collapsed_codebook(tmp_path):
    data = _write_cache(tmp_path / "cache")
    stem = _collapsed_model(tmp_path / "collapsed")
    model, _ = load_latent_action_model(stem)
    report, _ = evaluate_lam(model, load_windows(data, model.config))
    assert report["env_collapsed"] and report["env_codes_used"] == 1
    result = _run("eval", "lam", "--model", str(stem), "--data", str(data))
    assert result.returncode == 1 and "FAIL: collapsed codebook(s): environment" in result.stderr


def test_weights_whose_sha256_differs_are_refused(tmp_path):
    stem = _collapsed_model(tmp_path / "lam")
    load_latent_action_model(stem)  # intact: loads
    weights = tmp_path / "lam.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # one flipped bit in a tensor
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"sha256 .* does not match .* refusing to load it"):
        load_latent_action_model(stem)
    result = _run("eval", "lam", "--model", str(stem), "--data", str(tmp_path))
    assert result.returncode == 2 and "does not match" in result.stderr and "Traceback" not in result.stderr


SHIPPED = Path(__file__).resolve().parents[1] / "models" / "lam_v2.0"


@pytest.fixture(scope="module")
def recorded_cache(tmp_path_factory):
    """A minute of varied drives (all scenarios, a seed the shipped model never saw), cached."""
    root = tmp_path_factory.mktemp("lam_logs")
    recorded = _run("record", "--scenario", "all", "--minutes", "1", "--seed", "21", "--out", str(root / "bags"))
    assert recorded.returncode == 0, recorded.stderr[-2000:]
    built = _run("dataset", str(root / "bags"), "--out", str(root / "cache"))
    assert built.returncode == 0, built.stderr[-2000:]
    return root / "cache"


@pytest.mark.slow
def test_shipped_weights_load_and_evaluate(recorded_cache, tmp_path):
    """The shipped model loads through the same code a user's weights do (sha256 checked), and
    `latentvla eval lam` uses it by default; on fresh drives neither codebook has collapsed."""
    model, description = load_latent_action_model(SHIPPED)
    assert description["version"] == "2.0" and model.config.codebook_size == 16
    assert len(description["glosses"]) == 16 and description["glosses_source"] == "held-out logs"
    result = _run("eval", "lam", "--data", str(recorded_cache), "--json", str(tmp_path / "lam.json"))
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((tmp_path / "lam.json").read_text())
    assert report["model_version"] == "2.0" and set(REPORT_KEYS) <= set(report)
    assert not report["ego_collapsed"] and not report["env_collapsed"]
    assert report["env_ami_agents"] is not None and report["windows_with_agents_truth"] == report["windows"]
    assert (tmp_path / "lam.png").stat().st_size > 1000
    # The training-free token beside the model's, on the same score half.
    assert report["cost_volume_token_ami_maneuver"] is not None and report["ego_ami_maneuver_score_half"] is not None
    assert 0 < report["baseline_windows"] < report["windows"]


@pytest.mark.slow
def test_cost_volume_reads_the_yaw_of_recorded_drives_without_training(recorded_cache):
    """The baseline token's yaw follows the odometry's on drives it never saw; with frame t+1
    taken from another window there is no yaw to read and the agreement is gone."""
    from dataclasses import replace

    from latentvla_ros.evaluation.cost_volume_baseline import cost_volume_yaw

    config = LatentActionConfig()
    windows = load_windows(recorded_cache, config)
    truth = windows.yaw_rate * windows.step_s
    assert np.corrcoef(cost_volume_yaw(windows, config), truth)[0, 1] > 0.6
    indices = windows.indices.copy()
    indices[:, -1] = np.random.default_rng(0).permutation(indices[:, -1])
    mismatched = replace(windows, indices=indices)
    assert abs(np.corrcoef(cost_volume_yaw(mismatched, config), truth)[0, 1]) < 0.3


def test_baseline_codes_are_fit_on_one_half_and_fall_back_when_few_values_differ():
    from latentvla_ros.evaluation.cost_volume_baseline import quantized

    values = np.repeat([-0.1, 0.0, 0.1], 10) + np.tile(np.linspace(-0.01, 0.01, 10), 3)
    fit = np.arange(30) % 2 == 0
    codes = quantized(values, fit, codes=3)
    assert len(np.unique(codes)) == 3 and all(len(np.unique(codes[i : i + 10])) == 1 for i in (0, 10, 20))
    assert len(np.unique(quantized(np.where(fit, 0.0, values), fit))) == 1  # one value to fit: one code


@pytest.mark.slow
def test_label_writes_future_ego_targets_into_the_cache(recorded_cache):
    result = _run("label", "--data", str(recorded_cache))
    assert result.returncode == 0, result.stderr[-2000:]
    log_dir = sorted(p for p in recorded_cache.iterdir() if p.is_dir())[0]
    from latentvla_ros.data.cache import LogSamples

    log = LogSamples.load(log_dir)
    labels = log.labels
    assert labels is not None and json.loads(str(labels["model"]))["version"] == "2.0"
    targets, frames = labels["future_ego_tokens"], labels["future_frames"]
    assert targets.shape == (len(frames), 12) and len(frames) > 50
    assert targets.min() >= 0 and targets.max() < 16 and targets.dtype == np.int64
    # Target k of frame f is the ego token of the step starting 3 k frames later.
    by_frame = dict(zip(labels["frame_t"].tolist(), labels["ego_tokens"].tolist(), strict=True))
    for row in (0, len(frames) // 2, len(frames) - 1):
        expected = [by_frame[int(frames[row]) + 3 * k] for k in range(12)]
        assert targets[row].tolist() == expected
    assert f"{log_dir.name}" in result.stdout


def test_every_stage2_option_may_differ_from_a_reused_stage1():
    """--stage1-from accepts a stage 1 trained without any of the stage-2 options: every config
    field the stage-1 modules do not read is listed as stage-2 only."""
    from dataclasses import replace

    from latentvla_ros.training.lam_stages import STAGE2_ONLY_FIELDS

    stage1 = {
        name: LatentActionModel(TINY).get_submodule(name).state_dict() for name in LatentActionModel.STAGE1_MODULES
    }
    for name in STAGE2_ONLY_FIELDS:
        value = getattr(TINY, name)
        changed = (not value) if isinstance(value, bool) else ("ground_plane" if isinstance(value, str) else value * 2)
        torch.manual_seed(0)
        model = LatentActionModel(replace(TINY, **{"ego_decoder_warp": True, name: changed}))
        for module, state in stage1.items():
            shapes = {key: tensor.shape for key, tensor in model.get_submodule(module).state_dict().items()}
            assert shapes == {key: tensor.shape for key, tensor in state.items()}, (name, module)
    added = {"ego_motion_cost_volume", "ego_action_warp_only", "ego_warp_geometry"}
    assert added <= STAGE2_ONLY_FIELDS


def test_stage1_ego_motion_warp_moves_frame_t_by_the_true_ego_motion():
    """environment_ego_warp: the stage-1 decoder starts from frame t moved by the odometry's
    ego motion (the ground-plane warp), so the environment action is left what that motion
    does not explain; the environment IDM sees that residual as three more channels."""
    from dataclasses import replace

    from latentvla_ros.models.latent_action import EGO_MOTION_SCALE, GroundPlaneWarp

    config = replace(TINY, environment_ego_warp=True)
    model = LatentActionModel(config).eval()
    plain_channels = LatentActionModel(TINY).environment_encoder.features[0].in_channels
    assert model.environment_encoder.features[0].in_channels == plain_channels + 3
    torch.nn.init.zeros_(model.stage1_decoder.out.weight)  # no residual: the prediction is the moved frame
    batch = _batch(config)
    batch["ego_motion"] = torch.tensor([[0.8, 0.0, 0.0], [0.5, 0.2, 1.0]] * 3)  # scaled units
    moved = GroundPlaneWarp(config)(batch["frames"][:, -2], batch["ego_motion"] * torch.tensor(EGO_MOTION_SCALE))
    prediction = model(batch, stage=1).prediction
    assert torch.allclose(prediction, moved, atol=1e-6)
    assert (prediction - batch["frames"][:, -2]).abs().mean() > 1e-3  # not frame t itself
    # Without the option the same decoder starts from frame t unmoved.
    plain = LatentActionModel(TINY).eval()
    torch.nn.init.zeros_(plain.stage1_decoder.out.weight)
    assert torch.allclose(plain(batch, stage=1).prediction, batch["frames"][:, -2], atol=1e-6)


def test_stage1_decoder_may_also_read_frame_t_unmoved():
    """environment_decoder_unmoved: the stage-1 decoder reads frame t moved by the ego motion
    and frame t itself (six channels) and still adds its residual to the moved frame; the
    option is refused without the warp it extends."""
    from dataclasses import replace

    config = replace(TINY, environment_ego_warp=True, environment_decoder_unmoved=True)
    model = LatentActionModel(config).eval()
    assert model.stage1_decoder.down[0][0].in_channels == 6
    assert (
        LatentActionModel(replace(config, environment_decoder_unmoved=False)).stage1_decoder.down[0][0].in_channels == 3
    )
    torch.nn.init.zeros_(model.stage1_decoder.out.weight)
    batch = _batch(config)
    batch["ego_motion"] = torch.tensor([[0.8, 0.0, 0.0], [0.5, 0.2, 1.0]] * 3)
    moved = model.moved_by_ego_motion(batch["frames"][:, -2], batch["ego_motion"])
    assert torch.allclose(model(batch, stage=1).prediction, moved, atol=1e-6)
    # The unmoved frame reaches the network: with the moved frame and the action held, changing
    # it changes the prediction.
    torch.nn.init.normal_(model.stage1_decoder.out.weight, std=0.1)
    environment = model(batch, stage=1).environment.embedding
    current = batch["frames"][:, -2]
    before = model.stage1_predict(current, environment, batch, moved)
    after = model.stage1_predict(torch.roll(current, 3, dims=-1), environment, batch, moved)
    assert (after - before).abs().max() > 1e-4
    with pytest.raises(ValueError, match="environment_decoder_unmoved needs environment_ego_warp"):
        replace(TINY, environment_decoder_unmoved=True)


@pytest.mark.parametrize("unmoved", [False, True])
def test_stage1_baselines_feed_the_decoder_what_training_does(unmoved):
    """eval lam's stage-1 figures (inferred, shuffled and constant codes) go through the same
    decoder input as training: with environment_ego_warp the decoder fed the inferred codes
    reproduces training's stage-1 prediction exactly (before, it was fed frame t unmoved, so
    every stage-1 baseline of such a model was measured on frames it never trained on)."""
    from dataclasses import replace

    from latentvla_ros.evaluation.latent_action_evaluation import predict

    config = replace(TINY, environment_ego_warp=True, environment_decoder_unmoved=unmoved)
    torch.manual_seed(0)
    model = LatentActionModel(config)
    torch.nn.init.normal_(model.stage1_decoder.out.weight, std=0.1)
    predictions = predict(model.eval(), _tiny_windows(10), batch_size=5, stage=1, baselines=True)
    assert predictions.stages[1].inferred == pytest.approx(predictions.reconstruction_mse, rel=1e-5)


def test_the_camera_belongs_to_stage1_when_it_warps_by_the_ego_motion():
    from dataclasses import replace

    from latentvla_ros.training.lam_stages import CAMERA_FIELDS, STAGE2_ONLY_FIELDS, stage2_only_fields

    assert CAMERA_FIELDS <= stage2_only_fields(TINY) == STAGE2_ONLY_FIELDS
    warped = stage2_only_fields(replace(TINY, environment_ego_warp=True))
    assert not CAMERA_FIELDS & warped and "ego_motion_cost_volume" in warped
    assert "environment_ego_warp" not in STAGE2_ONLY_FIELDS


def test_stage1_loss_may_weight_what_the_ego_motion_leaves_unexplained():
    """environment_residual_weight: stage 1's fitted loss weights a pixel by how much of frame
    t+1 the moved frame t leaves unexplained; the same error costs more on a moving vehicle than
    on road the warp explains, a uniform residual gives plain MSE, and the reported
    reconstruction stays plain MSE."""
    from dataclasses import replace

    from latentvla_ros.models.latent_action import residual_weighted_mse

    target = torch.zeros(1, 3, 4, 4)
    moved = torch.zeros(1, 3, 4, 4)
    moved[..., 0, 0] = 1.0  # one pixel the motion does not explain
    on_vehicle, on_road = target.clone(), target.clone()
    on_vehicle[..., 0, 0] = 0.1
    on_road[..., 3, 3] = 0.1
    plain = torch.nn.functional.mse_loss(on_vehicle, target)
    assert residual_weighted_mse(on_vehicle, target, moved, 4.0) > plain
    assert residual_weighted_mse(on_road, target, moved, 4.0) < plain
    uniform = torch.full_like(moved, 0.5)
    assert residual_weighted_mse(on_vehicle, target, uniform, 4.0) == pytest.approx(plain.item())

    config = replace(TINY, environment_ego_warp=True, environment_residual_weight=4.0)
    torch.manual_seed(0)
    model = LatentActionModel(config).eval()
    batch = _batch(config)
    batch["ego_motion"] = torch.tensor([[0.8, 0.0, 0.0], [0.5, 0.2, 1.0]] * 3)
    output = model(batch, stage=1)
    target = batch["frames"][:, -1]
    moved = model.moved_by_ego_motion(batch["frames"][:, -2], batch["ego_motion"])
    assert output.reconstruction_loss.item() == pytest.approx(
        torch.nn.functional.mse_loss(output.prediction, target).item()
    )
    weighted = residual_weighted_mse(output.prediction, target, moved, 4.0)
    assert output.losses["reconstruction"].item() == pytest.approx(config.reconstruction_weight * weighted.item())
    assert weighted.item() != pytest.approx(output.reconstruction_loss.item())


def test_every_loss_weight_must_be_a_finite_number_at_least_zero():
    """A negative, NaN or infinite term weight (all reachable through `--set`) is refused when
    the config is built, before any data is read; zero (the term switched off) is allowed."""
    from dataclasses import fields, replace

    from latentvla_ros.models.latent_action import LOSS_WEIGHTS, LatentActionConfig

    # A weight added later is checked too, or this fails.
    assert set(LOSS_WEIGHTS) == {f.name for f in fields(LatentActionConfig) if f.name.endswith("_weight")}
    for name in LOSS_WEIGHTS:
        assert getattr(replace(TINY, **{name: 0.0}), name) == 0.0
        for weight in (-1.0, float("nan"), float("inf")):  # NaN compares false: a bare `< 0` let it through
            with pytest.raises(ValueError, match=f"{name} must be a finite number >= 0"):
                replace(TINY, **{name: weight})
