"""The teacher VLM: real Qwen2.5-VL classes built from small configs, the 3B config on the meta
device, the one loading path, constrained decoding, training/eval CLIs, and the node over
the real middleware."""

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.lam_cache import write_cache
from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

from latentvla_ros.core.camera_anchor import CameraAnchor
from latentvla_ros.core.ego_state import EgoState
from latentvla_ros.models.checkpoint import CheckpointError, save_model
from latentvla_ros.models.latent_action import LatentActionConfig, LatentActionModel
from latentvla_ros.models.teacher.teacher_config import QWEN25_VL_3B, TeacherConfig
from latentvla_ros.models.teacher.teacher_model import LatentActionTeacher, prompt_corpus
from latentvla_ros.models.teacher.teacher_tokenizer import build_offline_tokenizer

TINY = TeacherConfig(
    image_height=28,
    image_width=56,
    text_hidden_size=48,
    text_layers=1,
    text_heads=4,
    text_kv_heads=2,
    text_intermediate_size=64,
    vision_hidden_size=32,
    vision_layers=1,
    vision_heads=2,
    vision_intermediate_size=64,
)
BIN = Path(sys.executable).parent
NODES = Path(sys.prefix) / "lib" / "latentvla_ros"


def _frames(count: int, history: int = 2, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, size=(count, history, 64, 128, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def saved_teacher(tmp_path_factory):
    directory = tmp_path_factory.mktemp("teacher") / "teacher_v1.0"
    LatentActionTeacher.build_small(TINY).save_pretrained(directory, "1.0")
    return directory


def test_small_teacher_round_trips_and_predicts_valid_actions(saved_teacher):
    """Acceptance 1: built from a small config, saved, loaded back through the `model_path`
    path (safetensors, local files only), 12 valid tokens per frame."""
    assert {"model.safetensors", "config.json", "tokenizer.json", "latentvla_teacher.json"} <= {
        path.name for path in saved_teacher.iterdir()
    }
    assert not list(saved_teacher.glob("*.bin"))
    teacher = LatentActionTeacher.from_pretrained(saved_teacher)
    assert teacher.config == TINY and teacher.version == "1.0"
    assert teacher.tokenizer.convert_ids_to_tokens(teacher.action_token_ids.tolist()) == [
        f"<latent_{code}>" for code in range(16)
    ]
    output = teacher.predict(_frames(3), np.array([0, 1, 3]), np.array([0.0, 8.5, 25.0]))
    assert output.tokens.shape == (3, 12) and output.tokens.dtype == torch.long
    assert int(output.tokens.min()) >= 0 and int(output.tokens.max()) < 16
    assert output.probabilities.shape == (3, 12, 16)
    torch.testing.assert_close(output.probabilities.sum(-1), torch.ones(3, 12))
    # Greedy: each token is the most likely code of its step's distribution.
    assert torch.equal(output.tokens, output.probabilities.argmax(-1))
    assert output.action_embeddings.shape == (3, 12, 48) and output.visual_embedding.shape == (3, 48)
    # The same frames give the same answer; a different frame need not.
    again = teacher.predict(_frames(3), np.array([0, 1, 3]), np.array([0.0, 8.5, 25.0]))
    torch.testing.assert_close(again.probabilities, output.probabilities)


def test_one_pass_prediction_equals_a_teacher_forced_pass_over_its_own_tokens(saved_teacher):
    """predict reads the distributions and embeddings off the decoding steps themselves; a
    separate teacher-forced pass over the prompt and the decoded tokens (what predict did
    before) must give the same numbers at every step."""
    teacher = LatentActionTeacher.from_pretrained(saved_teacher)
    frames, commands, speeds = _frames(3, seed=4), np.array([0, 1, 3]), np.array([0.0, 8.5, 25.0])
    output = teacher.predict(frames, commands, speeds)
    batch = teacher.encode(frames, commands, speeds, targets=output.tokens.numpy())
    del batch["labels"]
    with torch.no_grad():
        forced = teacher.model(**batch, output_hidden_states=True)
    probabilities = torch.softmax(teacher.action_logits(forced.logits, 12).float(), dim=-1)
    hidden = forced.hidden_states[-1]
    image_mask = (batch["mm_token_type_ids"] == 1).unsqueeze(-1).float()
    visual = (hidden * image_mask).sum(dim=1) / image_mask.sum(dim=1)
    torch.testing.assert_close(output.probabilities, probabilities, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(output.action_embeddings, hidden[:, -12:], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(output.visual_embedding, visual, atol=1e-4, rtol=1e-4)
    # The comparison can tell the steps apart: neighbouring positions' embeddings differ.
    assert not torch.allclose(hidden[:, -12:-1], hidden[:, -11:], atol=1e-3)


def test_changed_weights_are_refused(saved_teacher, tmp_path):
    import shutil

    copy = tmp_path / "teacher"
    shutil.copytree(saved_teacher, copy)
    weights = copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"does not match .* refusing to load it"):
        LatentActionTeacher.from_pretrained(copy)
    with pytest.raises(CheckpointError, match="not a model directory"):
        LatentActionTeacher.from_pretrained(tmp_path / "nowhere")


def test_training_inputs_put_the_loss_on_the_twelve_action_positions_only():
    teacher = LatentActionTeacher.build_small(TINY)
    targets = np.array([[3] * 12, list(range(12))])
    batch = teacher.encode(_frames(2), np.array([1, 2]), np.array([5.0, 12.25]), targets)
    labels = batch["labels"]
    assert ((labels != -100).sum(dim=1) == 12).all()
    codes = {int(token): code for code, token in enumerate(teacher.action_token_ids)}
    assert [[codes[int(t)] for t in row[-12:]] for row in labels] == targets.tolist()
    # Two frames per input, each 1 x 2 merged patches: 4 image tokens a row, marked for 3-D rotary positions.
    assert (batch["mm_token_type_ids"].sum(dim=1) == 4).all()
    assert batch["image_grid_thw"].tolist() == [[1, 2, 4]] * 4
    loss = teacher.model(**batch).loss
    assert torch.isfinite(loss) and float(loss.detach()) > 0


def test_qwen25_vl_3b_config_on_the_meta_device():
    """The paper-size path without a download: the real 3B architecture (no weights), the same
    token-adding code and the same output shapes."""
    tokenizer = build_offline_tokenizer(prompt_corpus(12), 300)
    with torch.device("meta"):
        model = Qwen2_5_VLForConditionalGeneration(Qwen2_5_VLConfig(**QWEN25_VL_3B))
    parameters = sum(p.numel() for p in model.parameters())
    assert 3.7e9 < parameters < 3.8e9, parameters  # Qwen2.5-VL-3B: 3.75 B
    teacher = LatentActionTeacher(model, tokenizer, None, TeacherConfig())
    assert len(teacher.action_token_ids) == 16
    assert int(teacher.action_token_ids.max()) < model.get_input_embeddings().num_embeddings
    assert teacher.hidden_size == 2048
    logits = torch.empty(2, 40, model.config.text_config.vocab_size, device="meta")
    assert teacher.action_logits(logits, 12).shape == (2, 12, 16)


def test_camera_anchor_runs_on_the_newest_frame_and_counts_what_it_skips():
    anchor = CameraAnchor(keep_s=2.0, odometry_tolerance_s=0.05)
    image = np.zeros((4, 4, 3), np.uint8)
    for k in range(5):
        anchor.add_frame(k * 100_000_000, image + k)
    assert anchor.take() is None and anchor.counters.without_odometry == 0  # no odometry yet: waits
    anchor.add_odometry(EgoState(480_000_000, 0.0, 0.0, 0.0, 7.0))
    anchor.add_frame(500_000_000, image + 5)
    anchor.add_frame(300_000_000, image)  # out of order: ignored, counted
    stamp, frames, ego = anchor.take((-0.3, 0.0))
    assert stamp == 500_000_000 and ego.velocity_x_mps == 7.0
    assert [int(f[0, 0, 0]) for f in frames] == [2, 5]  # 0.3 s earlier, then the newest
    assert anchor.take() is None  # nothing new since
    counters = anchor.counters
    assert (counters.received, counters.processed, counters.dropped, counters.stale) == (7, 1, 5, 1)
    anchor.add_frame(900_000_000, image)  # newer than every state: waits for its odometry, uncounted
    assert anchor.take() is None and anchor.counters.without_odometry == 0
    assert anchor.add_odometry(EgoState(1_000_000_000, 0.0, 0.0, 0.0, 7.0))  # wakes the model
    # States 0.52 s apart (no interpolation), the nearest 0.1 s away: beyond the tolerance.
    assert anchor.take() is None and anchor.counters.without_odometry == 1
    assert anchor.counters.drop_rate() == pytest.approx((5 + 1) / 8)


def test_a_frame_that_overtakes_its_odometry_waits_for_it():
    """On a vehicle (and in lock-stepped replay) a frame can arrive before the odometry at its
    stamp; it is planned on once that odometry arrives, not dropped."""
    anchor = CameraAnchor(keep_s=2.0, odometry_tolerance_s=0.05)
    image = np.zeros((4, 4, 3), np.uint8)
    anchor.add_odometry(EgoState(100_000_000, 1.0, 0.0, 0.0, 5.0))
    anchor.add_frame(300_000_000, image)  # odometry so far ends 0.2 s before the frame
    assert anchor.take() is None and anchor.counters.without_odometry == 0
    assert anchor.add_odometry(EgoState(300_000_000, 2.0, 0.0, 0.0, 5.0)) is True
    stamp, _, ego = anchor.take()
    assert stamp == 300_000_000 and ego.x_m == 2.0
    assert anchor.add_odometry(EgoState(400_000_000, 2.5, 0.0, 0.0, 5.0)) is False  # nothing waiting
    # Odometry that stopped long before the frame (> 1 s): counted and dropped, not waited for.
    anchor.add_frame(2_000_000_000, image)
    assert anchor.take() is None and anchor.counters.without_odometry == 1


def _run(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "latentvla"), *arguments], capture_output=True, text=True, timeout=900, check=False
    )


@pytest.mark.slow
def test_train_and_eval_teacher_commands(tmp_path):
    """`latentvla label` → `train teacher` → `eval teacher`: a model directory that loads, and the
    report with the teacher beside its three baselines."""
    cache = write_cache(tmp_path / "cache", frames=80)
    lam = LatentActionModel(LatentActionConfig())
    save_model(lam, lam.config.to_dict(), tmp_path / "lam", "latent_action_model", "2.0")
    assert _run("label", "--data", str(cache), "--model", str(tmp_path / "lam")).returncode == 0
    out = tmp_path / "run"
    trained = _run("train", "teacher", "--data", str(cache), "--out", str(out), "--steps", "4", "--batch-size", "4")
    assert trained.returncode == 0, trained.stderr[-3000:]
    report = json.loads((out / "teacher_eval.json").read_text())
    for name in ("teacher", "majority", "repeat_current", "blank_image"):
        assert len(report[f"{name}_top1_per_step"]) == 12 and 0.0 <= report[f"{name}_top1"] <= 1.0
    assert "teacher_nll" in report and (out / "metrics.jsonl").read_text().count("\n") >= 1
    again = _run("train", "teacher", "--data", str(cache), "--out", str(out), "--steps", "4")
    assert again.returncode == 2 and "pass --resume" in again.stderr
    resumed = _run("train", "teacher", "--data", str(cache), "--out", str(out), "--steps", "6", "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    evaluated = _run("eval", "teacher", "--data", str(cache), "--model", str(out / "teacher_v1.0"), "--json",
                     str(tmp_path / "teacher.json"))  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert "repeat_current" in evaluated.stdout and "blank_image" in evaluated.stdout
    assert json.loads((tmp_path / "teacher.json").read_text())["model_version"] == "1.0"


def test_train_teacher_without_labels_is_one_clear_error(tmp_path):
    cache = write_cache(tmp_path / "cache")
    result = _run("train", "teacher", "--data", str(cache), "--out", str(tmp_path / "run"), "--steps", "2")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "no latent-action labels; run `latentvla label --data CACHE` first" in result.stderr


@pytest.mark.slow
def test_teacher_node_over_the_middleware(saved_teacher, rclpy_context):
    """Acceptance 3: a frame + odometry in; LatentActions out with 12 tokens, a 12 x 16
    distribution summing to 1 per step, stamped with the camera stamp; processing time too."""
    import rclpy
    from latentvla_ros.msg import LatentActions as LatentActionsMsg
    from nav_msgs.msg import Odometry
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import CompressedImage
    from std_msgs.msg import Float64

    from latentvla_ros.ros import conversions

    node_process = subprocess.Popen(
        [
            str(NODES / "teacher_node"), "--ros-args",
            "-p", f"model_path:={saved_teacher}", "-p", "rate_hz:=5.0", "-p", "image_transport:=compressed",
            "-r", "~/input/image:=/cam", "-r", "~/input/odometry:=/odom",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    node = rclpy.create_node("teacher_test", context=rclpy_context)
    executor = SingleThreadedExecutor(context=rclpy_context)
    executor.add_node(node)
    received, timings = [], []
    node.create_subscription(LatentActionsMsg, "/teacher/output/latent_actions", received.append, 10)
    node.create_subscription(Float64, "/teacher/debug/processing_time_ms", timings.append, 10)
    camera = node.create_publisher(CompressedImage, "/cam", 10)
    odometry = node.create_publisher(Odometry, "/odom", 10)
    image = np.random.default_rng(0).integers(0, 255, (128, 256, 3), dtype=np.uint8)
    published = []
    try:
        deadline = time.monotonic() + 90.0
        step = 0
        while time.monotonic() < deadline and not (received and timings):
            stamp_ns = 1_000_000_000 + step * 100_000_000
            odometry.publish(conversions.ego_state_to_odometry(EgoState(stamp_ns, 0.0, 0.0, 0.0, 6.0)))
            camera.publish(conversions.compressed_image_to_msg(image, stamp_ns, "camera"))
            published.append(stamp_ns)
            step += 1
            end = time.monotonic() + 0.1
            while time.monotonic() < end:
                executor.spin_once(timeout_sec=0.02)
        assert received, "the teacher node published no LatentActions"
        actions = conversions.latent_actions_from_msg(received[0])
        assert actions.source == 1 and actions.horizon == 12 and actions.codebook_size == 16
        np.testing.assert_allclose(actions.probabilities.sum(axis=1), 1.0, atol=1e-4)
        assert actions.stamp_ns in published  # the camera stamp, not the time of publishing
        assert actions.embedding is not None and actions.embedding.shape == (12, 48)
        assert timings and timings[0].data > 0.0
        assert node_process.poll() is None
    finally:
        node_process.terminate()
        output, _ = node_process.communicate(timeout=30)
        executor.shutdown()
        node.destroy_node()
    assert "Traceback" not in output, output[-3000:]


@pytest.mark.slow
def test_lora_training_merges_into_a_loadable_teacher(tmp_path):
    """LoRA (peft) on the attention projections, new token embeddings trained in full; the
    result is merged and loads through the same path, with the same output contract."""
    from latentvla_ros.models.latent_action_labelling import label_cache
    from latentvla_ros.models.latent_action_loading import load_latent_action_model
    from latentvla_ros.training.teacher_stage import TeacherTrainingConfig, train_teacher

    cache = write_cache(tmp_path / "cache", frames=70)
    lam = LatentActionModel(LatentActionConfig())
    save_model(lam, lam.config.to_dict(), tmp_path / "lam", "latent_action_model", "2.0")
    model, description = load_latent_action_model(tmp_path / "lam")
    assert len(list(label_cache(model, description, cache))) == 2
    training = TeacherTrainingConfig(steps=2, batch_size=2, evaluate_every=2, evaluation_frames=4, lora_rank=4)
    report = train_teacher(cache, tmp_path / "run", TINY, training)
    assert report["frames"] > 0 and len(report["teacher_top1_per_step"]) == 12
    teacher = LatentActionTeacher.from_pretrained(tmp_path / "run" / "teacher_v1.0")
    assert teacher.description["lora_rank"] == 4
    assert not any("lora" in name for name, _ in teacher.model.named_parameters())  # merged
    output = teacher.predict(_frames(1), np.array([1]), np.array([3.0]))
    assert output.tokens.shape == (1, 12) and torch.allclose(output.probabilities.sum(-1), torch.ones(1, 12))


@pytest.mark.parametrize(
    ("parameter", "message"),
    [
        ("rate_hz:=-1.0", "invalid parameter: rate_hz must be > 0, got -1.0"),
        ("image_transport:=theora", "invalid parameter: image_transport must be raw or compressed, got 'theora'"),
        ("model_path:=/nowhere", "invalid parameter: model_path '/nowhere': /nowhere: not a model directory"),
    ],
)
def test_teacher_node_bad_parameters_are_one_line_and_exit_2(parameter, message):
    result = subprocess.run(
        [str(NODES / "teacher_node"), "--ros-args", "-p", parameter],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 2 and message in output, output[-2000:]
    assert "Traceback" not in output


def test_latent_actions_that_overtake_their_frame_wait_for_it():
    """The student's actions for a frame can reach the planner before the frame itself
    (two subscriptions, no ordering between them): they are kept until it arrives."""
    anchor = CameraAnchor(keep_s=2.0, odometry_tolerance_s=0.05)
    image = np.zeros((4, 4, 3), np.uint8)
    assert anchor.take_at(500_000_000) is None and anchor.awaiting(500_000_000)  # frame not in yet
    anchor.add_frame(500_000_000, image)
    assert anchor.take_at(500_000_000) is None and anchor.awaiting(500_000_000)  # its odometry not in yet
    anchor.add_odometry(EgoState(500_000_000, 3.0, 0.0, 0.0, 6.0))
    stamp, _, ego = anchor.take_at(500_000_000)
    assert stamp == 500_000_000 and ego.x_m == 3.0
    assert not anchor.awaiting(500_000_000)  # taken: nothing more will come for it
    anchor.add_frame(700_000_000, image)
    assert not anchor.awaiting(600_000_000)  # a newer frame came and none at that stamp: never will
