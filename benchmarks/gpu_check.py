#!/usr/bin/env python3
"""The GPU check: one command that measures what depth_node does on a GPU, in one short call of a lent machine.

Writes OUT/gpu_check.json and OUT/gpu_check.md (rewritten after every step, so a run stopped at its time limit
still leaves what it measured). Each step is guarded: a failing step records its error and the rest go on; the
exit status is 1 when any step failed. Steps, most wanted first (``--steps`` picks some):

  env          GPU name, driver, memory; torch / CUDA / cuDNN / transformers / diffusers / onnxruntime versions
  pytest       ``pytest test/test_gpu.py`` (torch CUDA fp32/fp16/bf16 against the CPU, ensemble on CUDA against
               the CPU, the pipeline ensembling on the model's CUDA device; onnxruntime-gpu and TensorRT tests skip
               where those are not installed)
  da_small     Depth Anything V2 Small at 518×392 (random weights from the released config: timing does not
               depend on them), fp32 / fp16 / bf16
  diffusion    SD2-size UNet + VAE at 768×576 fp16: E2E-FT with the full VAE and with the tiny decoder, Marigold
               with 4 DDIM steps
  ensemble     the ensemble of N = 10 members at 768×768 on the device: IRLS only, and with the refinement
  default      the shipped default model's network in torch on the device, and its ONNX export on the CPU
  da_base, da_large   Depth Anything V2 Base / Large at 518×392, fp32 / fp16 / bf16
  da_compile   Depth Anything V2 Small fp16 with ``torch_compile: reduce-overhead`` (CUDA graphs)

Per row: "model ms" = the estimator's forward pass on a preprocessed input (prediction back on the host), "pipeline
ms" = ``DepthPipeline.process`` of a 640×480 RGB image with every stage (preprocess, model, metres, confidence,
organized xyz+rgb cloud); medians of ``--repeat`` runs after ``--warmup`` untimed ones, with
``torch.cuda.synchronize()`` around every timed run, and the peak GPU memory that row allocated.
A time budget (``--budget-s``) keeps the whole check inside one device call: a row that would not fit is recorded
as not run.

On a lent GPU machine (bare: no diffusers, no ROS; the repository and carried folders travel). Here, once:

    .venv/bin/python benchmarks/gpu_check.py --prepare .gpu

which runs ``pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp --platform
manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 -d .gpu/wheels`` for
diffusers==0.42.1 importlib_metadata==8.7.0 ai-edge-litert==2.3.0 backports.strenum==1.2.8 and copies FastDepth's
TFLite file (the default network's graph) into .gpu/ (git ignores it; 30 MiB, the repository 13 MiB),

then one device call with ``carry: [".gpu"]`` and ``timeout_s: 480`` (``--budget-s 400`` keeps the check itself
inside 7 minutes; rows that do not fit are recorded as not run):

    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .gpu/wheels/*.whl &&
    mkdir -p ../shared/models/fastdepth && cp .gpu/fast_depth_224.tflite ../shared/models/fastdepth/ &&
    PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 python3 benchmarks/gpu_check.py $OUT --budget-s 400

The rehearsal in the test suite (test/test_gpu_check.py) runs every step on tiny models on the CPU in under a
minute, so the script cannot rot between GPU draws:

    .venv/bin/python benchmarks/gpu_check.py out/gpu_check --device cpu --tiny
"""

from __future__ import annotations

import argparse
import gc
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_models import depth_anything, sd2_diffusion  # noqa: E402  (benchmarks/ beside this file)

STEPS = ("env", "pytest", "da_small", "diffusion", "ensemble", "default", "da_base", "da_large", "da_compile")
# What the GPU image (Python 3.12, torch, transformers, onnxruntime, pytest) lacks for the steps above: diffusers for
# the diffusion families, LiteRT to read the default network's TFLite graph; no ROS, no rosbags (not needed)
WHEELS = ("diffusers==0.42.1", "importlib_metadata==8.7.0", "ai-edge-litert==2.3.0", "backports.strenum==1.2.8")
PIP_DOWNLOAD = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version", "3.12",
                "--implementation", "cp", "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux_2_27_x86_64",
                "--platform", "manylinux_2_17_x86_64"]
PIPELINE_SIZE = (480, 640)  # the camera image every pipeline row processes
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # saving and loading bars would bury the rows in the log


@dataclass
class Row:
    """One measured configuration; times in milliseconds (medians), memory in MiB; None where not measured."""

    step: str
    model: str
    runtime: str
    model_input: str = ""
    model_ms: float | None = None
    pipeline_ms: float | None = None
    peak_mib: float | None = None
    runs: int = 0
    note: str = ""


@dataclass
class Report:
    """Everything the check found; written as JSON and markdown after every step."""

    out: Path
    device: str
    tiny: bool
    env: dict[str, Any] = field(default_factory=dict)
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)

    def write(self) -> None:
        data = {"device": self.device, "tiny": self.tiny, "env": self.env, "steps": self.steps,
                "rows": [asdict(r) for r in self.rows]}
        (self.out / "gpu_check.json").write_text(json.dumps(data, indent=2) + "\n")
        (self.out / "gpu_check.md").write_text(self.markdown())

    def markdown(self) -> str:
        env = self.env
        lines = [f"GPU check on {env.get('gpu', self.device)}"
                 + (f", driver {env['driver']}" if env.get("driver") else "")
                 + f"; torch {env.get('torch', '?')} (CUDA {env.get('cuda', '-')}), transformers {env.get('transformers', '-')}, "
                 f"diffusers {env.get('diffusers', '-')}, onnxruntime {env.get('onnxruntime', '-')}"
                 + ("; TINY models (a rehearsal: the numbers mean nothing)" if self.tiny else ""), ""]
        if "pytest" in self.steps:
            lines += [f"`pytest test/test_gpu.py`: {self.steps['pytest'].get('summary', self.steps['pytest']['status'])}", ""]
        lines += ["| step | model | runtime | model input | model ms | pipeline ms (640×480) | peak GPU MiB | runs | note |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in self.rows:
            lines.append(f"| {r.step} | {r.model} | {r.runtime} | {r.model_input} | {_fmt(r.model_ms)} | {_fmt(r.pipeline_ms)} | "
                         f"{_fmt(r.peak_mib, 0)} | {r.runs} | {r.note} |")
        failed = {k: v for k, v in self.steps.items() if v["status"] != "ok"}
        if failed:
            lines += ["", "Steps that did not finish:"]
            lines += [f"- {k}: {v['status']}: {v.get('error', '').splitlines()[0] if v.get('error') else ''}" for k, v in failed.items()]
        return "\n".join(lines) + "\n"


def _fmt(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:,.{digits}f}".replace(",", " ")


class Budget:
    """Seconds left of the whole check; a row asks before it starts, and shortens its repeats to fit."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()


class Timer:
    """Honest wall-clock medians on one device: synchronize before and after every timed call, peak memory per row."""

    def __init__(self, device: str, repeat: int, warmup: int, budget: Budget) -> None:
        import torch

        self.torch, self.cuda = torch, device.startswith("cuda")
        self.repeat, self.warmup, self.budget = repeat, warmup, budget

    def sync(self) -> None:
        if self.cuda:
            self.torch.cuda.synchronize()

    def reset_peak(self) -> None:
        if self.cuda:
            self.torch.cuda.reset_peak_memory_stats()

    def peak_mib(self) -> float | None:
        return self.torch.cuda.max_memory_allocated() / 2**20 if self.cuda else None

    def once_ms(self, fn: Callable[[], Any]) -> float:
        self.sync()
        start = time.perf_counter()
        fn()
        self.sync()
        return (time.perf_counter() - start) * 1e3

    def median_ms(self, fn: Callable[[], Any], share: float = 0.5) -> tuple[float, int]:
        """Median of ``repeat`` timed runs after ``warmup`` untimed ones; fewer runs (≥ 3) when ``repeat`` would
        take more than ``share`` of the budget left. Returns (median ms, runs)."""
        for _ in range(self.warmup):
            fn()
        first = self.once_ms(fn)
        affordable = int(share * max(self.budget.left(), 0) * 1e3 / max(first, 1e-3))
        runs = max(3, min(self.repeat, affordable))
        times = [first] + [self.once_ms(fn) for _ in range(runs - 1)]
        return float(np.median(times)), runs


class OutOfTime(Exception):
    """The budget left is too small to start the next row."""


def start_row(report: Report, timer: Timer, row: Row, min_left_s: float = 10.0) -> Row:
    """Add ``row`` to the report and start its peak-memory count; OutOfTime (the row noted as not run) when fewer
    than ``min_left_s`` seconds are left."""
    report.rows.append(row)
    if timer.budget.left() < min_left_s:
        row.note = "not run: time budget"
        raise OutOfTime(f"{row.model}, {row.runtime}")
    timer.reset_peak()
    return row


def finish_row(row: Row, timer: Timer) -> None:
    row.peak_mib = timer.peak_mib()
    print(f"  {row.model} [{row.runtime}] {row.model_input}: model {_fmt(row.model_ms)} ms, pipeline {_fmt(row.pipeline_ms)} ms, "
          f"peak {_fmt(row.peak_mib, 0)} MiB ({row.runs} runs) {row.note}", flush=True)
    _free(timer)


def measure(report: Report, timer: Timer, step: str, model: str, runtime: str, load: Callable[[], Any],
            pipeline_config: dict[str, Any] | None = None, note: str = "", min_left_s: float = 10.0) -> Row:
    """Load an estimator, time its forward pass and (with ``pipeline_config``) the whole pipeline on a 640×480
    image; add the row to the report (also when it fails, or does not fit in ``min_left_s``: its note says why)."""
    from depth_node.core.camera import PinholeCamera
    from depth_node.core.pipeline import DepthPipeline, PipelineConfig

    row = start_row(report, timer, Row(step, model, runtime, note=note), min_left_s)
    estimator = load()
    rgb = np.random.default_rng(0).integers(0, 256, (*PIPELINE_SIZE, 3), dtype=np.uint8)
    x = estimator.preprocess(rgb)
    shape = tuple(x.shape)
    h, w = (shape[1], shape[2]) if shape[-1] == 3 else (shape[-2], shape[-1])  # NHWC or NCHW
    row.model_input = f"{w}×{h}"
    row.model_ms, row.runs = timer.median_ms(lambda: estimator.infer(x))
    if pipeline_config is not None:
        camera = PinholeCamera.from_hfov(PIPELINE_SIZE[1], PIPELINE_SIZE[0], 70.0)
        pipeline = DepthPipeline(estimator, PipelineConfig(**pipeline_config))
        row.pipeline_ms, runs = timer.median_ms(lambda: pipeline.process(rgb, camera))
        row.runs = min(row.runs, runs)
    estimator = pipeline = None  # released before finish_row empties the GPU cache
    finish_row(row, timer)
    return row


def _free(timer: Timer) -> None:
    gc.collect()
    if timer.cuda:
        timer.torch.cuda.empty_cache()


# ---------------------------------------------------------------------------------------------------- the steps


def step_env(report: Report, args: argparse.Namespace, timer: Timer, folder: Path) -> str:
    import torch

    env: dict[str, Any] = {"python": platform.python_version(), "machine": platform.machine(), "cpu_count": os.cpu_count(),
                           "torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version()}
    for package in ("transformers", "diffusers", "onnxruntime", "numpy", "safetensors"):
        try:
            env[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            env[package] = None
    if args.device.startswith("cuda"):
        properties = torch.cuda.get_device_properties(torch.device(args.device))
        env.update(gpu=properties.name, gpu_memory_mib=properties.total_memory // 2**20,
                   multiprocessors=properties.multi_processor_count, capability=f"{properties.major}.{properties.minor}")
        try:
            smi = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True,
                                 text=True, timeout=20)
            env["driver"] = smi.stdout.strip().splitlines()[0] if smi.returncode == 0 and smi.stdout.strip() else None
        except (OSError, subprocess.TimeoutExpired):
            env["driver"] = None
    else:
        env["gpu"] = f"CPU ({platform.machine()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()})"
    report.env = env
    return ", ".join(f"{k} {v}" for k, v in env.items() if v is not None)


def step_pytest(report: Report, args: argparse.Namespace, timer: Timer, folder: Path) -> str:
    """test/test_gpu.py in its own process, bounded by the budget; the summary line is the result."""
    timeout = max(10.0, min(240.0, timer.budget.left() - 60))
    environment = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    try:
        done = subprocess.run([sys.executable, "-m", "pytest", "test/test_gpu.py", "-q", "-rs", "-p", "no:cacheprovider"],
                              cwd=REPO, capture_output=True, text=True, timeout=timeout, env=environment)
    except subprocess.TimeoutExpired as timeout_error:
        raise RuntimeError(f"pytest test/test_gpu.py ran past {timeout:.0f} s") from timeout_error
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    summary = lines[-1].strip("= ") if lines else f"no output (exit {done.returncode})"
    report.steps["pytest"]["summary"] = summary
    report.steps["pytest"]["output_tail"] = "\n".join(lines[-40:])
    if done.returncode != 0:  # 5 (nothing collected) is a failure too
        raise RuntimeError(f"pytest exit {done.returncode}: {summary}\n" + "\n".join(lines[-25:]) + done.stderr[-2000:])
    return summary


def _precisions(device: str) -> tuple[str, ...]:
    # fp16 is refused on the CPU by design (slower than fp32 there); the rehearsal runs the reduced-precision
    # path with bf16 instead
    return ("fp32", "fp16", "bf16") if device.startswith("cuda") else ("fp32", "bf16")


def _depth_anything_rows(report: Report, args: argparse.Namespace, timer: Timer, folder: Path, size: str,
                         label: str, compile_mode: str = "off") -> str:
    from depth_node.estimators import load_estimator

    real_size = "tiny" if args.tiny else size
    card = depth_anything(folder, real_size, long_side=98 if args.tiny else None)
    step = f"da_{size}" if compile_mode == "off" else "da_compile"
    cuda = args.device.startswith("cuda")
    precisions = _precisions(args.device) if compile_mode == "off" else (("fp16",) if cuda else ("fp32",))
    runtime = "torch" + ("" if compile_mode == "off" else f" compile {compile_mode}")
    done = []
    for precision in precisions:
        row = measure(report, timer, step, label, f"{runtime} {precision}",
                      lambda: load_estimator(card, device=args.device, precision=precision, compile_mode=compile_mode),
                      {"scale_mode": "fixed"}, note="" if compile_mode == "off" else "first calls compile (warm-up)",
                      min_left_s=10.0 if compile_mode == "off" or args.tiny else 150.0)  # compiling takes a minute or two
        done.append(f"{precision} {_fmt(row.model_ms)} ms")
    shutil.rmtree(card.parent / f"da_{real_size}", ignore_errors=True)
    return ", ".join(done)


def step_da_small(report: Report, args: argparse.Namespace, timer: Timer, folder: Path) -> str:
    return _depth_anything_rows(report, args, timer, folder, "small", "Depth Anything V2 Small")


def step_da_base(report: Report, args: argparse.Namespace, timer: Timer, folder: Path) -> str:
    return _depth_anything_rows(report, args, timer, folder, "base", "Depth Anything V2 Base")


def step_da_large(report: Report, args: argparse.Namespace, timer: Timer, folder: Path) -> str:
    return _depth_anything_rows(report, args, timer, folder, "large", "Depth Anything V2 Large")


def step_da_compile(report: Report, args: argparse.Namespace, timer: Timer, folder: Path) -> str:
    return _depth_anything_rows(report, args, timer, folder, "small", "Depth Anything V2 Small", "reduce-overhead")


def _variant_card(card: Path, name: str, **diffusion: Any) -> Path:
    """A copy of a diffusion card beside it, on the same weights folder, with ``diffusion`` entries changed."""
    data = yaml.safe_load(card.read_text())
    data["diffusion"].update(diffusion)
    data["name"] = name
    path = card.parent / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def step_diffusion(report: Report, args: argparse.Namespace, timer: Timer, folder: Path) -> str:
    """One SD2-size folder (UNet with the 8-channel [image, noise] input, VAE, tiny decoder) serves three cards."""
    from depth_node.estimators import load_estimator

    size = "tiny" if args.tiny else "sd2"
    tiny_decoder = sd2_diffusion(folder, "e2e_ft", tiny=True, size=size, long_side=128 if args.tiny else None)
    cards = [
        ("E2E-FT (SD2 UNet + VAE)", _variant_card(tiny_decoder, "e2e_ft_full", decoder="full")),
        ("E2E-FT (SD2 UNet + tiny decoder)", tiny_decoder),
        ("Marigold v1.1, 4 DDIM steps (+ VAE)", _variant_card(tiny_decoder, "marigold_4", variant="marigold", steps=4, decoder="full")),
    ]
    precision = "fp16" if args.device.startswith("cuda") else "bf16"
    done = []
    for label, card in cards:
        row = measure(report, timer, "diffusion", label, f"torch {precision}",
                      lambda: load_estimator(card, device=args.device, precision=precision), {"scale_mode": "fixed"})
        done.append(f"{label} {_fmt(row.model_ms)} ms")
    return ", ".join(done)


def ensemble_members(n: int, size: int, device: str, seed: int = 11) -> Any:
    """``n`` affinely different noisy copies of a depth-like field with edges, each with its own invalid (NaN) pixels."""
    import torch

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    truth = 1.0 + np.sin(3 * xx) + 0.5 * yy + (xx > 0.7) * 0.8 + (np.hypot(xx - 0.3, yy - 0.6) < 0.15) * 0.6
    members = np.stack([rng.uniform(0.5, 2) * truth + rng.uniform(-1, 1) + rng.normal(0, 0.05, truth.shape) for _ in range(n)])
    members[rng.random(members.shape) < 0.02] = np.nan
    return torch.from_numpy(members.astype(np.float32)).to(device)


def step_ensemble(report: Report, args: argparse.Namespace, timer: Timer, folder: Path) -> str:
    from depth_node.core.ensemble import ensemble
    from depth_node.core.spaces import Invariance

    n, size = 10, 64 if args.tiny else 768
    members = ensemble_members(n, size, args.device)
    done = []
    for label, refine_iterations in (("IRLS only", 0), ("IRLS + refinement", 10)):
        row = start_row(report, timer, Row("ensemble", f"ensemble N={n}, affine, median + MAD", f"torch fp32, {label}", f"{size}×{size}"))
        result = ensemble(members, Invariance.AFFINE, "median", refine_iterations=refine_iterations)
        row.model_ms, row.runs = timer.median_ms(lambda: ensemble(members, Invariance.AFFINE, "median", refine_iterations=refine_iterations))
        row.note = f"Marigold objective {result.objective:.4f}"
        finish_row(row, timer)
        done.append(f"{label} {_fmt(row.model_ms)} ms")
    return ", ".join(done)


def step_default(report: Report, args: argparse.Namespace, timer: Timer, folder: Path) -> str:
    """The default card's network in torch on the device (fp32, and fp16 on a GPU), and its ONNX file on the CPU."""
    import torch

    from depth_node.backends.torch_backend import prepare_module
    from depth_node.estimators import load_estimator
    from depth_node.estimators.card import load_card
    from depth_node.train.network import load_depth_network

    card_path = Path(args.default_card)
    card = load_card(card_path)
    h, w = card.input.target_size(*PIPELINE_SIZE)
    done = []
    precisions = ("fp32", "fp16") if args.device.startswith("cuda") else ("fp32",)
    for precision in precisions:
        row = start_row(report, timer, Row("default", f"default model ({card.name}) network", f"torch {precision}", f"{w}×{h}"))
        network, _ = load_depth_network(card_path)
        network, device, dtype = prepare_module(network, args.device, precision)
        x = torch.randn(1, 3, h, w, device=device, dtype=dtype)

        def forward() -> None:
            with torch.inference_mode():
                network(x)

        row.model_ms, row.runs = timer.median_ms(forward)
        network = None  # released before finish_row empties the GPU cache
        finish_row(row, timer)
        done.append(f"torch {precision} {_fmt(row.model_ms)} ms")
    cpu_timer = Timer("cpu", timer.repeat, timer.warmup, timer.budget)
    row = measure(report, cpu_timer, "default", f"default model ({card.name})", "onnxruntime CPU",
                  lambda: load_estimator(card_path), {}, note=f"{os.cpu_count()} CPU cores")
    done.append(f"onnxruntime CPU {_fmt(row.model_ms)} ms")
    return ", ".join(done)


RUNNERS: dict[str, Callable[[Report, argparse.Namespace, Timer, Path], str]] = {
    "env": step_env, "pytest": step_pytest, "da_small": step_da_small, "diffusion": step_diffusion,
    "ensemble": step_ensemble, "default": step_default, "da_base": step_da_base, "da_large": step_da_large,
    "da_compile": step_da_compile,
}


def run_steps(report: Report, args: argparse.Namespace, steps: list[str]) -> int:
    """Every step in order, each guarded; returns the number of steps that failed."""
    budget = Budget(args.budget_s)
    timer = Timer(args.device, args.repeat, args.warmup, budget)
    failures = 0
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as scratch:
        for name in steps:
            started = time.monotonic()
            report.steps[name] = {"status": "running"}
            print(f"[{name}] {budget.left():.0f} s left", flush=True)
            try:
                if name != "env" and budget.left() < 10:
                    raise OutOfTime(name)
                result = RUNNERS[name](report, args, timer, Path(scratch))
                report.steps[name].update(status="ok", result=result)
            except OutOfTime as stop:
                report.steps[name].update(status="not run: time budget", error=str(stop))
            except Exception as error:  # noqa: BLE001 - one failing step must not lose the others
                failures += 1
                report.steps[name].update(status="failed", error=f"{type(error).__name__}: {error}",
                                          traceback=traceback.format_exc()[-4000:])
                print(f"  FAILED: {type(error).__name__}: {error}", flush=True)
            report.steps[name]["seconds"] = round(time.monotonic() - started, 1)
            _free(timer)
            report.write()
    return failures


def prepare(folder: Path) -> int:
    """Here, online: the wheels the GPU image lacks and FastDepth's TFLite file, into ``folder`` (carry it)."""
    from depth_node.estimators.card import load_card

    wheels = folder / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    for spec in WHEELS:
        subprocess.run(PIP_DOWNLOAD + ["-d", str(wheels), spec], check=True)
    tflite = load_card(REPO / "models" / "fastdepth.yaml").weights
    shutil.copyfile(tflite, folder / tflite.name)
    size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**20
    command = __doc__.split("recorded as not run):\n\n", 1)[1].split("\n\n")[0]
    print(f"{folder}: {size:.1f} MiB to carry beside the repository (64 MiB in all). On the GPU machine, with carry "
          f"[{folder.name!r}], from the repository root:\n{command.replace('.gpu/', folder.name + '/')}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, nargs="?", help="folder for gpu_check.json and gpu_check.md (created)")
    parser.add_argument("--device", default="cuda", help="torch device to measure (default: %(default)s; cpu for the rehearsal)")
    parser.add_argument("--tiny", action="store_true", help="tiny models instead of the real architectures (the rehearsal)")
    parser.add_argument("--steps", default=",".join(STEPS), help="comma-separated steps, in order (default: all: %(default)s)")
    parser.add_argument("--repeat", type=int, help="timed runs per figure (median; default 50, 3 with --tiny)")
    parser.add_argument("--warmup", type=int, help="untimed runs before timing (default 10, 1 with --tiny)")
    parser.add_argument("--budget-s", type=float, default=400.0, help="seconds for the whole check; rows that do not fit are "
                        "recorded as not run (default: %(default)s, inside a 480 s device call)")
    parser.add_argument("--default-card", default=str(REPO / "models" / "default.yaml"), help="the card of the 'default' step")
    parser.add_argument("--prepare", type=Path, metavar="DIR", help="download the wheels and copy the files to carry into DIR, then stop")
    args = parser.parse_args(argv)
    if args.prepare:
        return prepare(args.prepare)
    if args.out is None:
        parser.error("give the output folder (or --prepare DIR)")
    steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    unknown = sorted(set(steps) - set(STEPS))
    if unknown:
        parser.error(f"unknown steps {', '.join(unknown)}; choose from {', '.join(STEPS)}")
    args.repeat = args.repeat or (3 if args.tiny else 50)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.tiny else 10)
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"ERROR: torch {torch.__version__} sees no CUDA GPU; on a machine without one run the rehearsal: --device cpu --tiny",
              file=sys.stderr)
        return 2
    import transformers

    transformers.utils.logging.disable_progress_bar()
    args.out.mkdir(parents=True, exist_ok=True)
    report = Report(args.out, args.device, args.tiny)
    failures = run_steps(report, args, steps)
    print(report.markdown())
    print(f"written: {args.out / 'gpu_check.json'}, {args.out / 'gpu_check.md'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
