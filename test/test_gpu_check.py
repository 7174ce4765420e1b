"""benchmarks/gpu_check.py rehearsed on the CPU: every step runs on tiny models, so the one prepared GPU call
cannot rot between GPU draws; a failing step and a spent time budget lose nothing else."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "benchmarks" / "gpu_check.py"
STEPS = ("env", "pytest", "da_small", "diffusion", "ensemble", "default", "da_base", "da_large", "da_compile")


def gpu_check(out: Path, *args: str, timeout: float = 280) -> tuple[subprocess.CompletedProcess, dict]:
    done = subprocess.run([sys.executable, str(SCRIPT), str(out), *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    report = json.loads((out / "gpu_check.json").read_text()) if (out / "gpu_check.json").is_file() else {}
    return done, report


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess, dict, Path]:
    out = tmp_path_factory.mktemp("gpu_check")
    done, report = gpu_check(out, "--device", "cpu", "--tiny")
    return done, report, out


def test_the_rehearsal_runs_every_step_on_the_cpu(rehearsal: tuple[subprocess.CompletedProcess, dict, Path]) -> None:
    done, report, out = rehearsal
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert tuple(report["steps"]) == STEPS
    assert {name: step["status"] for name, step in report["steps"].items()} == {name: "ok" for name in STEPS}
    assert report["tiny"] and report["device"] == "cpu" and report["env"]["torch"]
    rows = report["rows"]
    per_step = {name: [r for r in rows if r["step"] == name] for name in STEPS}
    # fp32 + bf16 on the CPU (fp16 is refused there by design); three diffusion cards; two ensemble settings;
    # the default network in torch + its ONNX file; one compiled row
    assert [len(per_step[s]) for s in STEPS[2:]] == [2, 3, 2, 2, 2, 2, 1]
    for row in rows:
        assert row["model_ms"] is not None and 0 < row["model_ms"] < 60_000, row
        assert row["runs"] == 3 and row["model_input"], row
    for row in per_step["da_small"] + per_step["diffusion"] + per_step["da_compile"]:
        assert row["pipeline_ms"] is not None and row["pipeline_ms"] > 0, row
    assert [r["model_input"] for r in per_step["da_small"]] == ["98×70"] * 2  # 640×480 at the tiny card's long side 98, /14
    assert per_step["da_compile"][0]["runtime"] == "torch compile reduce-overhead fp32"


def test_the_refinement_never_worsens_marigolds_objective(rehearsal: tuple[subprocess.CompletedProcess, dict, Path]) -> None:
    rows = [r for r in rehearsal[1]["rows"] if r["step"] == "ensemble"]
    irls, refined = (float(r["note"].rsplit(" ", 1)[1]) for r in rows)
    assert math.isfinite(irls) and 0 < refined <= irls + 1e-6


def test_the_gpu_tests_ran_in_their_own_pytest(rehearsal: tuple[subprocess.CompletedProcess, dict, Path]) -> None:
    pytest_step = rehearsal[1]["steps"]["pytest"]
    assert "skipped" in pytest_step["summary"] and "failed" not in pytest_step["summary"], pytest_step  # no GPU here
    assert "no CUDA GPU visible" in pytest_step["output_tail"]


def test_the_markdown_table_has_every_row(rehearsal: tuple[subprocess.CompletedProcess, dict, Path]) -> None:
    _, report, out = rehearsal
    markdown = (out / "gpu_check.md").read_text()
    assert "TINY models" in markdown and "`pytest test/test_gpu.py`: " in markdown
    table = [line for line in markdown.splitlines() if line.startswith("| ") and not line.startswith("| step")]
    assert len(table) == len(report["rows"])
    assert all(line.count("|") == 10 for line in table)


def test_a_failing_step_loses_none_of_the_others(tmp_path: Path) -> None:
    done, report = gpu_check(tmp_path, "--device", "cpu", "--tiny", "--steps", "ensemble,default,env",
                             "--default-card", str(tmp_path / "missing.yaml"))
    assert done.returncode == 1
    assert report["steps"]["default"]["status"] == "failed" and "missing.yaml" in report["steps"]["default"]["error"]
    assert report["steps"]["ensemble"]["status"] == "ok" and report["steps"]["env"]["status"] == "ok"
    assert len(report["rows"]) == 2 and all(r["model_ms"] > 0 for r in report["rows"])
    assert "- default: failed:" in (tmp_path / "gpu_check.md").read_text()


def test_rows_past_the_time_budget_are_recorded_as_not_run(tmp_path: Path) -> None:
    done, report = gpu_check(tmp_path, "--device", "cpu", "--tiny", "--steps", "env,ensemble,default", "--budget-s", "0")
    assert done.returncode == 0, done.stderr[-2000:]
    assert report["steps"]["env"]["status"] == "ok"
    assert [report["steps"][s]["status"] for s in ("ensemble", "default")] == ["not run: time budget"] * 2
    assert report["rows"] == []


def test_bad_arguments_say_what_to_do(tmp_path: Path) -> None:
    done, _ = gpu_check(tmp_path, "--steps", "env,warp_drive")
    assert done.returncode == 2 and "unknown steps warp_drive" in done.stderr
    import torch

    if not torch.cuda.is_available():
        done, _ = gpu_check(tmp_path, "--device", "cuda")
        assert done.returncode == 2 and "--device cpu --tiny" in done.stderr
