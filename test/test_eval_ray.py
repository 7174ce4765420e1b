"""`depth-node eval --ray` on a local Ray cluster (two workers on this machine), against the serial run."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install depth_node[ray])")

CLI = [sys.executable, "-m", "depth_node.tools.cli"]


@pytest.fixture(scope="module")
def bags(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two rendered recordings of 7 frames, both stored as a folder called bag/ (as rosbag2 names them)."""
    root = tmp_path_factory.mktemp("ray_bags")
    out = []
    for name in ("room_a", "room_b"):
        run = subprocess.run([*CLI, "synth", str(root / name), "--frames", "7", "--size", "160x120", "--no-folder"],
                             capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr
        out.append(root / name / "bag")
    return out


def _eval(args: list[str], env: dict[str, str] | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, "eval", *args], capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})


def _rows(path: Path) -> list[dict[str, str]]:
    """frames.csv without the timing columns (wall-clock: never equal between two runs)."""
    return [{k: v for k, v in row.items() if not k.startswith("ms_")} for row in csv.DictReader(path.open())]


def test_ray_scores_every_frame_exactly_as_the_serial_run(tmp_path: Path, bags: list[Path], conv_card: Path) -> None:
    """Shards of 3 frames on 2 workers: every per-frame score in frames.csv and every aggregate in metrics.json equals
    the serial run's, bit for bit. (Ray gives each worker one BLAS thread; the serial run here is given one too: with
    more, numpy sums the alignment fits in another order and they agree to ~1e-12 relative, not bit for bit.)"""
    common = ["-p", f"model_card:={conv_card}", "--max-depth", "20"]
    serial = _eval([*map(str, bags), "-o", str(tmp_path / "serial"), *common], env={"OMP_NUM_THREADS": "1"})
    assert serial.returncode == 0, serial.stderr
    clustered = _eval([*map(str, bags), "-o", str(tmp_path / "ray"), *common, "--ray", "--workers", "2", "--shard-frames", "3"])
    assert clustered.returncode == 0, clustered.stderr
    assert "on 2 Ray worker(s)" in clustered.stderr and "14/14" in clustered.stderr   # one bar over both bags
    folders = sorted(p.name for p in (tmp_path / "ray").iterdir() if p.is_dir())
    assert folders == ["room_a__bag", "room_b__bag"]                  # two bags called bag/: their folders apart
    for name in folders:
        assert _rows(tmp_path / "ray" / name / "frames.csv") == _rows(tmp_path / "serial" / name / "frames.csv")
        mine = json.loads((tmp_path / "ray" / name / "metrics.json").read_text())
        theirs = json.loads((tmp_path / "serial" / name / "metrics.json").read_text())
        assert mine["metrics"] == theirs["metrics"] and mine["coverage"] == theirs["coverage"]
        assert mine["frames"] == theirs["frames"] == {"images": 7, "scored": 7, "errors": 0, "dropped": 0,
                                                      "without_ground_truth": 0, "unscored": 0}
        assert mine["ray"]["shards_done"] == 3 and len(mine["ray"]["workers_used"]) >= 1
        assert mine["output_bags"] == ["shards/0000/bag", "shards/0001/bag", "shards/0002/bag"]
        depth_messages = 0
        for bag in mine["output_bags"]:
            from rosbags.highlevel import AnyReader

            with AnyReader([tmp_path / "ray" / name / bag]) as reader:
                depth_messages += sum(1 for c, _, _ in reader.messages() if c.topic == "/depth/image")
        assert depth_messages == 7
        assert len(list((tmp_path / "ray" / name / "thumbs").glob("*.jpg"))) == 7
    summary = json.loads((tmp_path / "ray" / "summary.json").read_text())
    assert summary["all_bags"] == json.loads((tmp_path / "serial" / "summary.json").read_text())["all_bags"]
    assert summary["all_bags"]["test-model"]["frames"]["scored"] == 14 and summary["failed_bags"] == []


def test_compare_runs_configurations_times_bags_as_tasks(tmp_path: Path, bags: list[Path], conv_card: Path) -> None:
    a, b = tmp_path / "fine.yaml", tmp_path / "coarse.yaml"
    a.write_text(f"depth_node:\n  ros__parameters:\n    model_card: {conv_card}\n")
    b.write_text(f"depth_node:\n  ros__parameters:\n    model_card: {conv_card}\n    output_resolution: model\n")
    run = _eval([str(bags[0]), "-o", str(tmp_path / "out"), "--compare", str(a), str(b), "--no-bag", "--ray", "--workers", "2",
                 "--shard-frames", "4"])
    assert run.returncode == 0, run.stderr
    for label in ("fine", "coarse"):
        assert json.loads((tmp_path / "out" / label / "metrics.json").read_text())["frames"]["scored"] == 7
    report = (tmp_path / "out" / "report.html").read_text()
    assert "fine vs coarse" in report


def _eval_workers() -> list[int]:
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if b"ray::EvalWorker" in cmdline.read_bytes():
                pids.append(int(cmdline.parent.name))
        except OSError:
            continue
    return pids


def test_a_killed_worker_is_retried_and_an_unreadable_bag_is_reported(tmp_path: Path, bags: list[Path], model_dir: Path) -> None:
    """SIGKILL one worker in the middle of its shard: Ray restarts it and runs the shard again, every frame is scored.
    A bag that cannot be read is in summary.json with its reason while the others finish; the exit status says 1."""
    from _models import conv_model

    slow = model_dir / "ray_slow"
    slow.mkdir(exist_ok=True)
    card = conv_model(slow)
    card.write_text(card.read_text().replace("long_side: 96", "long_side: 1024"))  # ~0.3 s a frame here
    broken = tmp_path / "broken.mcap"
    broken.write_bytes(b"not a recording")
    process = subprocess.Popen([*CLI, "eval", *map(str, bags), str(broken), "-o", str(tmp_path / "out"), "--no-bag",
                                "-p", f"model_card:={card}", "--ray", "--workers", "2", "--shard-frames", "7"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed = None
    end = time.monotonic() + 120
    while killed is None and time.monotonic() < end and process.poll() is None:
        workers = _eval_workers()
        if len(workers) == 2 and any((tmp_path / "out").glob("*/shards/0000/frames.csv")):
            time.sleep(1.0)                                              # inside a shard
            os.kill(workers[0], signal.SIGKILL)
            killed = workers[0]
        time.sleep(0.2)
    _, stderr = process.communicate(timeout=300)
    assert killed is not None, stderr
    assert process.returncode == 1, stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert [f["bag"] for f in summary["failed_bags"]] == [str(broken)] and "not an MCAP file" in summary["failed_bags"][0]["reason"]
    assert summary["all_bags"]["test-model"]["frames"]["scored"] == 14, stderr   # the killed shard was run again
    assert "FAILED" in stderr and str(broken) in stderr


def test_ctrl_c_cancels_the_tasks_and_leaves_a_readable_partial_report(tmp_path: Path, bags: list[Path], model_dir: Path) -> None:
    """Ctrl-C while shards run: no new shard starts, each worker stops after its frame in progress and returns what it
    did, and the reports hold those frames, marked interrupted (exit 130)."""
    from _models import conv_model

    slow = model_dir / "ray_slow_interrupt"
    slow.mkdir(exist_ok=True)
    card = conv_model(slow)
    card.write_text(card.read_text().replace("long_side: 96", "long_side: 1536"))
    process = subprocess.Popen([*CLI, "eval", *map(str, bags), "-o", str(tmp_path / "out"), "--no-bag", "-p", f"model_card:={card}",
                                "--ray", "--workers", "2", "--shard-frames", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    end = time.monotonic() + 120
    while time.monotonic() < end and not list((tmp_path / "out").glob("*/thumbs/*.jpg")):  # a frame done, no shard yet
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "every worker stops after its frame in progress" in stderr
    done = [json.loads(p.read_text()) for p in (tmp_path / "out").glob("*/metrics.json")]
    assert done and all(d["interrupted"] for d in done) and 1 <= sum(d["frames"]["scored"] for d in done) < 14
    assert all("interrupted — partial result" in p.read_text() for p in (tmp_path / "out").glob("*/report.html"))


def test_a_recorded_depth_topic_beside_the_node_on_ray_matches_the_serial_run(tmp_path: Path, bags: list[Path],
                                                                               conv_card: Path) -> None:
    first = _eval([str(bags[0]), "-o", str(tmp_path / "first"), "-p", f"model_card:={conv_card}", "--no-points"])
    assert first.returncode == 0, first.stderr
    args = [str(tmp_path / "first" / "bag"), "-p", f"model_card:={conv_card}", "--prediction-topic", "/depth/image",
            "--gt-topic", "/camera/aligned_depth_to_color/image_raw", "--no-bag"]
    serial = _eval([*args, "-o", str(tmp_path / "serial")], env={"OMP_NUM_THREADS": "1"})
    clustered = _eval([*args, "-o", str(tmp_path / "ray"), "--ray", "--workers", "2", "--shard-frames", "3"])
    assert serial.returncode == 0 and clustered.returncode == 0, serial.stderr + clustered.stderr
    for label in ("test-model", "recorded_depth_image"):
        assert _rows(tmp_path / "ray" / label / "frames.csv") == _rows(tmp_path / "serial" / label / "frames.csv"), label
    assert "test-model vs recorded /depth/image" in (tmp_path / "ray" / "report.html").read_text()
