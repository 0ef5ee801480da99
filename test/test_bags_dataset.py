"""Recording rosbag2 logs, reading them independently, and building the dataset."""

import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from mcap.reader import make_reader
from rosbags.rosbag2 import Reader
from rosbags.typesys import Stores, get_typestore

from latentvla_ros import topics
from latentvla_ros.core.driving_command import DrivingCommand
from latentvla_ros.core.ego_state import EgoState
from latentvla_ros.core.se2 import relative_poses
from latentvla_ros.data.bag_io import BagError, BagWriter, bag_topics
from latentvla_ros.data.cache import LogSamples
from latentvla_ros.data.dataset_builder import (
    DatasetConfig,
    build_dataset,
    build_log_samples,
    cache_log,
    find_bags,
)
from latentvla_ros.data.preview import read_episodes, render_bag_preview, render_drive_overview
from latentvla_ros.data.recording import record_scenario
from latentvla_ros.ros import conversions
from latentvla_ros.simulation.closed_loop import drive_expert
from latentvla_ros.simulation.perturbation import PerturbationConfig, PerturbationKind
from latentvla_ros.simulation.scenarios import SCENARIO_NAMES, ScenarioConfig
from latentvla_ros.simulation.world import DrivingWorld

SEED = 3
MINUTES = 2.0
LATENTVLA = Path(sys.executable).parent / "latentvla"


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """``latentvla record --scenario all --minutes 2 --seed N --plain --out DIR``: the plain
    expert, so the ground-truth test below can replay the same drive."""
    out = tmp_path_factory.mktemp("logs") / "bags"
    result = subprocess.run(
        [
            str(LATENTVLA),
            "record",
            "--scenario",
            "all",
            "--minutes",
            str(MINUTES),
            "--seed",
            str(SEED),
            "--plain",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return out


EXPECTED_TOPICS = {
    topics.CAMERA_IMAGE_COMPRESSED: "sensor_msgs/msg/CompressedImage",
    topics.CAMERA_INFO: "sensor_msgs/msg/CameraInfo",
    topics.ODOMETRY: "nav_msgs/msg/Odometry",
    topics.TF: "tf2_msgs/msg/TFMessage",
    topics.TF_STATIC: "tf2_msgs/msg/TFMessage",
    topics.DRIVING_COMMAND: "latentvla_ros/msg/DrivingCommand",
    topics.GROUND_TRUTH_AGENTS: "latentvla_ros/msg/GroundTruthAgents",
    topics.EPISODE: "std_msgs/msg/String",
    topics.TRAJECTORY: "latentvla_ros/msg/PlannedTrajectory",
}


@pytest.mark.slow
def test_recorded_bags_read_by_the_mcap_package(recorded):
    steps_per_bag = round(MINUTES * 60 / len(SCENARIO_NAMES) / 0.1)
    typestore = get_typestore(Stores.ROS2_JAZZY)
    for name in SCENARIO_NAMES:
        bag = recorded / f"{name}_seed{SEED}"
        mcap_files = list(bag.glob("*.mcap"))
        assert len(mcap_files) == 1 and (bag / "metadata.yaml").is_file()
        with open(mcap_files[0], "rb") as stream:
            reader = make_reader(stream)
            summary = reader.get_summary()
            channels = {channel.topic: channel for channel in summary.channels.values()}
            types = {topic: summary.schemas[channel.schema_id].name for topic, channel in channels.items()}
            counts = {
                channels_by_id.topic: count
                for channels_by_id, count in (
                    (summary.channels[channel_id], count)
                    for channel_id, count in summary.statistics.channel_message_counts.items()
                )
            }
            assert types == EXPECTED_TOPICS
            assert all(channel.message_encoding == "cdr" for channel in channels.values())
            assert all(summary.schemas[c.schema_id].encoding == "ros2msg" for c in channels.values())
            for topic in (topics.ODOMETRY, topics.CAMERA_IMAGE_COMPRESSED, topics.GROUND_TRUTH_AGENTS):
                assert counts[topic] == steps_per_bag, (topic, counts[topic])
            # Frames decode to images, without rclpy: rosbags' own CDR reader, then OpenCV.
            decoded = 0
            stream.seek(0)
            for _schema, _channel, message in make_reader(stream).iter_messages(
                topics=[topics.CAMERA_IMAGE_COMPRESSED]
            ):
                image_msg = typestore.deserialize_cdr(message.data, "sensor_msgs/msg/CompressedImage")
                image = cv2.imdecode(np.frombuffer(bytes(image_msg.data), np.uint8), cv2.IMREAD_COLOR)
                assert image.shape == (128, 256, 3)
                decoded += 1
                if decoded == 3:
                    break
            assert decoded == 3
        with Reader(bag) as rosbags_reader:  # and the rosbag2 metadata a stock `ros2 bag info` reads
            assert rosbags_reader.message_count == sum(counts.values())
            assert rosbags_reader.duration >= (steps_per_bag - 1) * 100_000_000


def _ground_truth_poses(name: str, duration_s: float) -> dict[int, np.ndarray]:
    """The simulator's own ego poses per stamp, from replaying the seeded drive."""
    world = DrivingWorld(ScenarioConfig(name, seed=SEED))
    poses = {}
    drive_expert(world, duration_s, lambda world, record: poses.__setitem__(world.time_ns, record.ego.pose))
    return poses


@pytest.mark.slow
@pytest.mark.parametrize("name", ["roundabout", "intersection"])
def test_dataset_future_trajectories_match_simulator_ground_truth(recorded, name):
    frames, samples, meta = build_log_samples(recorded / f"{name}_seed{SEED}", DatasetConfig())
    assert meta["command_source"] == "topic" and meta["samples"] > 100
    assert frames.shape[1:] == (128, 256, 3)
    truth = _ground_truth_poses(name, MINUTES * 60 / len(SCENARIO_NAMES))
    worst = 0.0
    for stamp, trajectory in zip(samples["stamps_ns"], samples["trajectory"], strict=True):
        future = np.array([truth[int(stamp) + k * 500_000_000] for k in range(1, 9)])
        expected = relative_poses(truth[int(stamp)], future)
        worst = max(worst, float(np.max(np.linalg.norm(trajectory[:, :2] - expected[:, :2], axis=1))))
    assert worst < 0.05, worst
    # Each simulator episode (the ego teleports to a route's start) is one continuous segment.
    assert meta["segments"] == len(read_episodes(recorded / f"{name}_seed{SEED}"))


@pytest.mark.slow
def test_build_dataset_splits_by_log_and_loads(recorded, tmp_path):
    index = build_dataset(recorded, tmp_path / "cache")
    assert sorted(log["name"] for log in index["logs"]) == sorted(f"{n}_seed{SEED}" for n in SCENARIO_NAMES)
    assert {log["split"] for log in index["logs"]} == {"train", "val"}
    log = LogSamples.load(tmp_path / "cache" / index["logs"][0]["name"])
    history = log.frame_history(10)
    assert history.shape == (4, 128, 256, 3) and history.dtype == np.uint8
    assert log.samples["trajectory"].shape[1:] == (8, 3)
    assert not list((tmp_path / "cache").glob("*.partial"))


@pytest.mark.slow
def test_missing_topic_error_lists_the_bag_topics(recorded, tmp_path):
    config = DatasetConfig(odometry_topic="/odom")
    with pytest.raises(BagError) as error:
        cache_log(recorded / f"merge_seed{SEED}", tmp_path, config)
    message = str(error.value)
    assert "missing topic(s) /odom" in message and f"{topics.ODOMETRY} (nav_msgs/msg/Odometry)" in message
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_truncated_bag_gives_clear_error_and_leaves_no_cache(recorded, tmp_path):
    bag = tmp_path / "truncated"
    shutil.copytree(recorded / f"highway_seed{SEED}", bag)
    mcap_file = next(bag.glob("*.mcap"))
    data = mcap_file.read_bytes()
    mcap_file.write_bytes(data[: len(data) // 2])
    cache = tmp_path / "cache"
    with pytest.raises(BagError, match=r"truncated|not a readable rosbag2"):
        cache_log(bag, cache, DatasetConfig())
    assert not (cache / "truncated").exists() and not (cache / "truncated.partial").exists()


@pytest.mark.slow
def test_preview_and_overview_pngs(recorded, tmp_path):
    bag = recorded / f"roundabout_seed{SEED}"
    preview = cv2.imread(str(render_bag_preview(bag, tmp_path / "preview.png", frame_count=3)))
    assert preview.shape == (3 * 256, 512 + 256, 3)
    overview = cv2.imread(str(render_drive_overview(bag, tmp_path / "overview.png")))
    assert overview.shape[0] > 400 and overview.std() > 10


@pytest.mark.slow
def test_varied_drives_mark_every_perturbation_and_the_dataset_reads_the_marks(tmp_path):
    """Perturbation episodes: each injection is a latentvla_ros/msg/Perturbation message in the
    bag, and the dataset marks exactly the frames inside its interval."""
    scenario = ScenarioConfig("highway", seed=4, cruise_speed_spread=0.3, traffic_density_spread=0.5)
    log = record_scenario(scenario, 45.0, tmp_path / "varied", perturbation=PerturbationConfig(mean_interval_s=4.0))
    assert log.perturbations >= 3 and log.summary.at_fault_collisions == 0
    with open(next((tmp_path / "varied").glob("*.mcap")), "rb") as stream:
        summary = make_reader(stream).get_summary()
        channels = {channel.topic: channel for channel in summary.channels.values()}
        perturbation_channel = channels[topics.PERTURBATION]
        assert summary.schemas[perturbation_channel.schema_id].name == "latentvla_ros/msg/Perturbation"
        assert summary.statistics.channel_message_counts[perturbation_channel.id] == log.perturbations
    _frames, samples, meta = build_log_samples(tmp_path / "varied", DatasetConfig())
    assert meta["perturbations"] == log.perturbations and meta["has_agents"]
    table = samples["perturbations"]
    assert table.shape == (log.perturbations, 3) and set(table[:, 0]) <= {int(k) for k in PerturbationKind}
    stamps = samples["frame_stamps_ns"]
    expected = np.full(len(stamps), -1)
    for kind, start, end in table:
        assert end > start
        expected[(stamps >= start) & (stamps < end)] = kind
    np.testing.assert_array_equal(samples["frame_perturbation"], expected)
    assert (samples["frame_perturbation"] >= 0).sum() >= 10  # injections last about a second each
    # Agents in view: counted for every frame (the bag has ground truth), nearest one ahead of the ego.
    assert (samples["frame_agents_in_view"] >= 0).all()
    seen = samples["frame_agents_in_view"] > 0
    assert seen.any() and (samples["frame_nearest_agent"][seen, 0] > 0).all()
    assert np.isnan(samples["frame_nearest_agent"][~seen]).all()


def _synthetic_bag(
    path: Path, odometry_times_s: np.ndarray, frame_times_s: np.ndarray, speed_mps: float = 10.0
) -> None:
    """A bag like a team's: raw Image camera, odometry driving straight, no command topic."""
    image = np.zeros((32, 64, 3), np.uint8)
    with BagWriter(path) as bag:
        for t in frame_times_s:
            stamp = round(t * 1e9)
            bag.write(topics.CAMERA_IMAGE, stamp, conversions.image_to_msg(image, stamp, "camera"))
        for t in odometry_times_s:
            stamp = round(t * 1e9)
            state = EgoState(stamp, x_m=speed_mps * t, y_m=0.0, yaw_rad=0.0, velocity_x_mps=speed_mps)
            bag.write(topics.ODOMETRY, stamp, conversions.ego_state_to_odometry(state))


def test_odometry_gaps_interpolated_below_horizon_and_split_above(tmp_path):
    odometry = np.round(np.arange(0.0, 40.0, 0.1), 1)
    short_gap = (odometry > 10.0) & (odometry < 12.0)  # 2 s: interpolated
    long_gap = (odometry > 20.0) & (odometry < 26.0)  # 6 s > the 4 s horizon: ends the sequence
    frames = np.round(np.arange(0.0, 40.0, 0.1), 1)
    _synthetic_bag(tmp_path / "gaps", odometry[~short_gap & ~long_gap], frames)
    _frames, samples, meta = build_log_samples(tmp_path / "gaps", DatasetConfig())
    assert meta["segments"] == 2 and meta["command_source"] == "derived from odometry"
    # A team's bag has no perturbation marks and no ground truth: nothing marked, agents unknown.
    assert meta["perturbations"] == 0 and not meta["has_agents"]
    assert (samples["frame_perturbation"] == -1).all() and (samples["frame_agents_in_view"] == -1).all()
    stamps_s = samples["stamps_ns"] * 1e-9
    # Inside the short gap the future is interpolated: straight at 10 m/s, exactly.
    across_short = (stamps_s > 7.0) & (stamps_s < 10.0)
    assert across_short.any()
    np.testing.assert_allclose(
        samples["trajectory"][across_short][:, :, 0], np.tile(np.arange(1, 9) * 5.0, (across_short.sum(), 1)), atol=1e-6
    )
    # No sample's window [t - 1.5 s, t + 4 s] reaches into the long gap.
    assert not np.any((stamps_s + 4.0 > 20.0) & (stamps_s - 1.5 < 26.0))
    # Derived commands look 8 s ahead: straight where that much odometry follows, unknown near an end.
    segment_end_s = np.where(stamps_s < 20.0, 20.0, 39.9)
    expected = np.where(stamps_s + 8.0 <= segment_end_s + 1e-6, DrivingCommand.STRAIGHT, DrivingCommand.UNKNOWN)
    np.testing.assert_array_equal(samples["command"], expected.astype(np.uint8))
    assert samples["ego_status"][:, 0] == pytest.approx(10.0)


def test_bag_without_usable_samples_is_a_clear_error(tmp_path):
    times = np.round(np.arange(0.0, 3.0, 0.1), 1)  # 3 s: shorter than 1.5 s history + 4 s future
    _synthetic_bag(tmp_path / "short", times, times)
    with pytest.raises(BagError, match=r"no sample has 1\.5 s of history and 4\.0 s of future"):
        cache_log(tmp_path / "short", tmp_path / "cache", DatasetConfig())
    assert not (tmp_path / "cache" / "short").exists()


def test_bag_writer_never_leaves_a_complete_looking_bag_on_error(tmp_path):
    with pytest.raises(RuntimeError), BagWriter(tmp_path / "bag") as bag:
        bag.write(topics.ODOMETRY, 1, conversions.ego_state_to_odometry(EgoState(1, 0.0, 0.0, 0.0, 1.0)))
        raise RuntimeError("recording interrupted")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(BagError, match="exists already"):
        (tmp_path / "taken").mkdir()
        BagWriter(tmp_path / "taken")


def test_a_finished_bag_names_its_storage_file_after_the_bag(tmp_path):
    """No `.partial` left inside a finished bag: the storage file and metadata.yaml say NAME."""
    _synthetic_bag(tmp_path / "drive", np.arange(0.0, 1.0, 0.05), np.arange(0.0, 1.0, 0.1))
    assert sorted(p.name for p in (tmp_path / "drive").iterdir()) == ["drive.mcap", "metadata.yaml"]
    assert "partial" not in (tmp_path / "drive" / "metadata.yaml").read_text()
    assert bag_topics(tmp_path / "drive")[topics.ODOMETRY][1] == 20  # readable by rosbags through metadata


def test_dataset_bag_hygiene(tmp_path):
    """The storage file names the same log as its folder; two logs of one name are refused;
    a failed multi-bag run leaves no per-log caches behind."""
    times = np.arange(0.0, 12.0, 0.05)
    _synthetic_bag(tmp_path / "train" / "drive", times, np.arange(0.0, 12.0, 0.1))
    _synthetic_bag(tmp_path / "val" / "drive", times, np.arange(0.0, 12.0, 0.1))
    config = DatasetConfig(camera_topic=topics.CAMERA_IMAGE)
    assert find_bags(tmp_path / "train" / "drive" / "drive.mcap") == [tmp_path / "train" / "drive"]
    with pytest.raises(BagError, match="two bags are named 'drive'"):
        build_dataset(tmp_path / "train", tmp_path / "cache", config, val_source=tmp_path / "val")
    _synthetic_bag(tmp_path / "many" / "a_good", times, np.arange(0.0, 12.0, 0.1))
    _synthetic_bag(tmp_path / "many" / "b_no_camera", times, np.zeros(0))
    for jobs in (1, 2):  # one process, or a pool whose other worker finished its log
        with pytest.raises(BagError):
            build_dataset(tmp_path / "many", tmp_path / f"cache{jobs}", config, jobs=jobs)
        assert not (tmp_path / f"cache{jobs}" / "dataset.json").exists()
        assert not (tmp_path / f"cache{jobs}" / "a_good").exists()


def test_dataset_jobs_read_logs_side_by_side_into_the_same_cache(tmp_path):
    """`latentvla dataset --jobs 2`: a log per process, and the cache equals the one-process one
    (logs driven at different speeds, so a log's samples filed under another's name would show)."""
    times = np.arange(0.0, 12.0, 0.05)
    for k, speed in enumerate((5.0, 10.0, 15.0)):
        _synthetic_bag(tmp_path / "bags" / f"log_{k}", times, np.arange(0.0, 12.0, 0.1), speed_mps=speed)
    config = DatasetConfig(camera_topic=topics.CAMERA_IMAGE)
    alone = build_dataset(tmp_path / "bags", tmp_path / "alone", config)
    pooled = build_dataset(tmp_path / "bags", tmp_path / "pooled", config, jobs=2)
    assert pooled == alone and [log["name"] for log in pooled["logs"]] == ["log_0", "log_1", "log_2"]
    for log, speed in zip(pooled["logs"], (5.0, 10.0, 15.0), strict=True):
        expected, got = (
            LogSamples.load(tmp_path / "alone" / log["name"]),
            LogSamples.load(tmp_path / "pooled" / log["name"]),
        )
        assert set(got.samples) == set(expected.samples)
        for key in expected.samples:
            np.testing.assert_array_equal(got.samples[key], expected.samples[key])
        np.testing.assert_allclose(got.samples["trajectory"][:, -1, 0], 4.0 * speed, atol=1e-3)
    with pytest.raises(ValueError, match="jobs must be a whole number >= 1, got 0"):
        build_dataset(tmp_path / "bags", tmp_path / "none", config, jobs=0)


def test_a_topic_of_the_wrong_type_is_one_line_naming_it(tmp_path):
    image = np.zeros((8, 8, 3), np.uint8)
    with BagWriter(tmp_path / "drive") as bag:  # a robot whose /odom topic carries camera images
        for k in range(3):
            bag.write(topics.CAMERA_IMAGE, k, conversions.image_to_msg(image, k, "camera"))
            bag.write("/odom", k, conversions.image_to_msg(image, k, "camera"))
    config = DatasetConfig(camera_topic=topics.CAMERA_IMAGE, odometry_topic="/odom")
    with pytest.raises(BagError) as error:
        build_log_samples(tmp_path / "drive", config)
    assert "topic /odom is sensor_msgs/msg/Image, expected nav_msgs/msg/Odometry" in str(error.value)


def test_every_bag_command_reads_another_robots_topics_and_frames(tmp_path):
    """A team's bag: raw camera on /front/image_raw, odometry on /odom in odom -> base_footprint,
    no camera info, no command topic. `dataset`, `preview` and `eval lam` take the same options;
    without them the error is one line naming what is missing."""
    bag = tmp_path / "robot_drive"
    image = np.random.default_rng(0).integers(0, 255, (48, 96, 3), dtype=np.uint8)
    with BagWriter(bag) as writer:
        for k in range(200):  # 20 s at 10 Hz
            stamp = 2_000_000_000 + k * 100_000_000
            t = k * 0.1
            state = EgoState(stamp, 8.0 * t, 0.0, 0.0, 8.0, frame_id="odom", child_frame_id="base_footprint")
            writer.write("/odom", stamp, conversions.ego_state_to_odometry(state))
            writer.write("/front/image_raw", stamp, conversions.image_to_msg(image, stamp, "front_camera"))
    options = [
        "--camera-topic", "/front/image_raw", "--odometry-topic", "/odom",
        "--odometry-frame", "odom", "--base-frame", "base_footprint",
    ]  # fmt: skip

    def run(*arguments: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(LATENTVLA), *arguments], capture_output=True, text=True, timeout=300, check=False)

    built = run("dataset", str(bag), "--out", str(tmp_path / "cache"), *options)
    assert built.returncode == 0, built.stderr[-2000:]
    assert "robot_drive" in built.stdout
    previewed = run("preview", str(bag), "--out", str(tmp_path / "preview"), *options)
    assert previewed.returncode == 0, previewed.stderr[-2000:]
    assert (tmp_path / "preview" / "robot_drive_preview.png").stat().st_size > 5_000
    evaluated = run("eval", "lam", "--data", str(bag), *options)
    assert evaluated.returncode in (0, 1), evaluated.stderr[-2000:]  # 1: a collapse on this data, said so
    assert "Traceback" not in evaluated.stderr
    without = run("preview", str(bag), "--out", str(tmp_path / "preview2"))
    assert without.returncode == 2 and "Traceback" not in without.stderr
    assert "/odom" in without.stderr and len(without.stderr.strip().splitlines()) == 1
