"""`depth-node demo` (what `make demo` runs): the real node on the embedded default model, end to end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2

REPO = Path(__file__).resolve().parent.parent


def test_demo_runs_the_node_on_the_default_model_and_reports(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    run = subprocess.run([sys.executable, "-m", "depth_node.tools.cli", "demo", "--out", str(out), "--frames", "4"],
                         capture_output=True, text=True, timeout=600, cwd=REPO)
    assert run.returncode == 0, run.stdout + run.stderr
    text = run.stdout
    assert "depth_node demo — model fastdepth_float (metric depth)" in text
    assert "synthetic scene (exact depth):" in text and "frames    in 4, out 4, dropped 0" in text
    assert "accuracy  AbsRel" in text and "latency   receive→publish" in text
    if (REPO.parent / "shared" / "data" / "bags").is_dir():
        assert "real RGB-D bag slambook_rgbd_ros2_mcap:" in text and "frames    in 5, out 5, dropped 0" in text
    picture = cv2.imread(str(out / "demo.png"))
    assert picture is not None and picture.shape[0] == 240 and picture.shape[1] >= 4 * 300   # four panels
    assert (out / "synthetic_eval" / "bag" / "metadata.yaml").is_file() and (out / "synthetic_eval" / "report.html").is_file()
    again = subprocess.run([sys.executable, "-m", "depth_node.tools.cli", "demo", "--out", str(tmp_path)],
                           capture_output=True, text=True, timeout=120, cwd=REPO)
    assert again.returncode == 2 and "was not made by depth-node demo" in again.stderr   # never deletes a stranger's folder
