"""``depth-node eval --ray``: the same evaluation, with bags and time shards of bags as Ray tasks.

The driver (this process) opens each bag once to count its frames and cuts it into shards of ``shard_frames`` frames.
Every (configuration, bag, shard) is one task, run by a :class:`EvalWorker` actor that loads each configuration's
model once and keeps it for every shard it is given; an actor's shard runs the node's pipeline through the same
:class:`~depth_node.eval.runner.Evaluator` as a serial run, so a frame's scores are computed by the same code on the
same pixels. Rows come back through the object store (a few KB a frame; images never leave the worker: a task
carries a bag *path*, so the bags must be on storage every node sees) and are merged, in frame order, into the same
frames.csv / metrics.json / report.html a serial run writes. Each shard writes its own output bag
(``shards/NNNN/bag``, listed in metrics.json as ``output_bags``) and its thumbnails into the shared ``thumbs/``.

State across frames (``temporal_smoothing``, the scale tracker of ``scale.mode`` ground_plane / sparse) is rebuilt at a
shard's start from ``warm_up`` frames before it (run, not scored); with neither, frames are independent and the
per-frame scores equal the serial run's bit for bit (test/test_eval_ray.py).

Faults: an actor that dies (killed, out of memory) is restarted and its shard retried (``max_restarts`` /
``max_task_retries``); a shard that still fails, or a bag that cannot be read, is reported with its reason in
``summary.json`` while the others finish; Ctrl-C starts no new shard and has every worker stop after its frame in
progress (a second one kills them), and the partial reports hold what was done.
"""

from __future__ import annotations

import csv
import logging
import os
import shutil
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import ray

from depth_node.core.parameters import PipelineConfig, load
from depth_node.core.pipeline import DepthPipeline
from depth_node.estimators.registry import load_model
from depth_node.eval.bag_input import BagFrames, FrameRange, TopicChoice
from depth_node.eval.runner import EvalOptions, Evaluator, FrameRow, RecordedSource, csv_header, csv_row
from depth_node.progress import ProgressBar

MAX_RESTARTS = 3  # an actor that dies is started again this often; its running shard is retried on it


@dataclass(frozen=True)
class Configuration:
    """A parameters file with its overrides, as every worker loads it."""

    label: str
    params: Path
    assignments: tuple[str, ...]
    prediction: str | None = None  # a recorded depth topic to score instead of running the pipeline (--prediction-topic)

    def config(self) -> PipelineConfig:
        return load(self.params, list(self.assignments))


@dataclass(frozen=True)
class Shard:
    """Frames ``start``..``end`` − 1 of one bag under one configuration, after ``warm_up`` frames run but not scored."""

    configuration: int
    bag: Path
    topics: TopicChoice
    slop_s: float
    start: int
    end: int
    warm_up: int
    out_dir: Path      # the shard's own frames.csv and output bag
    thumbs: Path       # the configuration's thumbnails, shared by its shards
    cloud_slop_s: float = 0.05


@dataclass
class ShardResult:
    shard: Shard
    rows: list[FrameRow]
    backend: str
    worker: str        # host:pid that ran it (the last attempt)
    wall_s: float


def plan(frame_count: int, shard_frames: int, warm_up: int) -> list[tuple[int, int, int]]:
    """(start, end, warm-up frames) covering ``frame_count`` frames in shards of ``shard_frames`` (the last one
    shorter); a shard's warm-up never reaches before the bag's first frame."""
    if shard_frames < 1:
        raise ValueError(f"shard size must be at least 1 frame, got {shard_frames}")
    return [(start, min(start + shard_frames, frame_count), min(warm_up, start))
            for start in range(0, frame_count, shard_frames)]


def default_warm_up(config: PipelineConfig) -> int:
    """Frames a shard runs before its first scored one: enough for the temporal filter and the scale tracker to
    settle (their memory is a few frames at the default smoothing); none when frames are independent."""
    stateful = config.temporal_smoothing or config.scale_mode in ("ground_plane", "sparse")
    return 30 if stateful else 0


class EvalWorker:
    """One Ray actor: loads each configuration's model on first use and scores the shards it is given."""

    def __init__(self, configurations: list[Configuration], options: EvalOptions) -> None:
        logging.getLogger("ray").setLevel(logging.WARNING)
        self.configurations, self.options = configurations, options
        self._loaded: dict[int, tuple[PipelineConfig, DepthPipeline]] = {}

    def _source(self, index: int) -> tuple[PipelineConfig, DepthPipeline | RecordedSource]:
        if index not in self._loaded:
            configuration = self.configurations[index]
            config = configuration.config()
            if configuration.prediction:
                self._loaded[index] = (config, RecordedSource(configuration.prediction))
            else:
                estimator, _, _ = load_model(config)
                self._loaded[index] = (config, DepthPipeline(estimator, config))
        return self._loaded[index]

    def run(self, shard: Shard, counter: Any) -> ShardResult:
        start = time.perf_counter()
        shutil.rmtree(shard.out_dir, ignore_errors=True)  # a retry starts the shard again (its first attempt's worker died)
        config, source = self._source(shard.configuration)
        if isinstance(source, DepthPipeline):
            source.reset_temporal()  # a shard starts as a bag does; its warm-up frames rebuild the state
        frames = FrameRange(BagFrames(shard.bag, shard.topics, shard.slop_s, max_frames=shard.end, cloud_slop_s=shard.cloud_slop_s), shard.start, shard.end,
                            shard.warm_up)
        label = self.configurations[shard.configuration].label
        evaluator = Evaluator(source, config, frames, shard.out_dir, self.options, label, {}, score_from=shard.start,
                              thumbs=shard.thumbs)
        # after each frame: count it, and stop there when the driver was interrupted (one round trip a frame)
        evaluation = evaluator.run(handle_signals=False, should_stop=lambda: ray.get(counter.add.remote(1)))
        backend = f"{source.estimator.backend}/{source.estimator.device}" if isinstance(source, DepthPipeline) else "recorded in the bag"
        return ShardResult(shard, evaluation.rows, backend,
                           f"{socket.gethostname()}:{os.getpid()}", time.perf_counter() - start)


class _Counter:
    """Frames scored so far over every shard (one progress bar for the whole run), and whether to stop."""

    def __init__(self) -> None:
        self.count, self.stopping = 0, False

    def add(self, n: int) -> bool:
        """Count ``n`` frames; True when the shards are to stop after this frame."""
        self.count += n
        return self.stopping

    def stop(self) -> None:
        self.stopping = True

    def value(self) -> int:
        return self.count


@dataclass
class RayRun:
    """Every shard's outcome: results by shard, shards that failed for good (with the reason), interrupted or not."""

    results: list[ShardResult] = field(default_factory=list)
    failed: list[tuple[Shard, str]] = field(default_factory=list)
    interrupted: bool = False
    workers: int = 0


def start(address: str | None, workers: int) -> int:
    """Connect to the cluster at ``address`` ('auto': the one this machine belongs to), or start a local one of
    ``workers`` CPUs; returns how many actors to run (``workers``, or the cluster's CPUs when 0)."""
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING}
    if address:
        ray.init(address=address, **kwargs)
    else:
        ray.init(num_cpus=workers or os.cpu_count(), **kwargs)
    return workers or max(1, int(ray.cluster_resources().get("CPU", 1)))


def run_shards(shards: list[Shard], configurations: list[Configuration], options: EvalOptions, actors: int,
               label: str, say: Callable[[str], None]) -> RayRun:
    """Every shard on ``actors`` workers (a free worker takes the next shard), one progress bar over all their
    frames; Ctrl-C stops the workers and keeps what is done."""
    outcome = RayRun(workers=actors)
    counter = ray.remote(_Counter).remote()
    worker_class = ray.remote(num_cpus=1, max_restarts=MAX_RESTARTS, max_task_retries=MAX_RESTARTS)(EvalWorker)
    workers = [worker_class.remote(configurations, options) for _ in range(max(1, min(actors, len(shards))))]
    queue = list(shards)
    running: dict[Any, tuple[Any, Shard]] = {}  # task → (worker, shard)

    def give(worker: Any) -> None:
        if queue:
            shard = queue.pop(0)
            running[worker.run.remote(shard, counter)] = (worker, shard)

    for worker in workers:
        give(worker)
    total = sum(s.end - s.start for s in shards)
    bar = ProgressBar(f"{label} on {len(workers)} Ray worker(s)")
    while running:
        try:
            ready, _ = ray.wait(list(running), num_returns=1, timeout=0.5)
            for task in ready:
                worker, shard = running.pop(task)
                try:
                    outcome.results.append(ray.get(task))
                except ray.exceptions.RayError as exc:  # its retries are spent: this shard is lost, the others go on
                    reason = _reason(exc)
                    outcome.failed.append((shard, reason))
                    say(f"WARNING: {shard.bag.name} frames {shard.start}-{shard.end - 1} failed after {MAX_RESTARTS} "
                        f"retries: {reason}")
                if not outcome.interrupted:
                    give(worker)
            bar(min(ray.get(counter.value.remote()), total), total)  # a retried shard counts its frames again
        except KeyboardInterrupt:
            if outcome.interrupted:  # the second one: now
                say("Ctrl-C again: stopping the workers now; their shards in progress are lost")
                for worker in workers:
                    ray.kill(worker, no_restart=True)
                break
            outcome.interrupted = True
            queue.clear()
            counter.stop.remote()
            say("\nCtrl-C: every worker stops after its frame in progress (again to stop now); the reports hold what is done")
    return outcome


def _reason(error: Exception) -> str:
    """The cause of a failed task in one line: the worker's own exception (a RayTaskError wraps it), or how the
    worker died."""
    cause = getattr(error, "cause", None)
    if isinstance(cause, BaseException) and not isinstance(cause, ray.exceptions.RayError):
        return f"{type(cause).__name__}: {cause}"[:300]
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    return (lines[-1] if lines else type(error).__name__)[:300]


def write_rows(out_dir: Path, rows: list[FrameRow]) -> None:
    """frames.csv of a merged run, as a serial run writes it."""
    with (out_dir / "frames.csv").open("w", newline="") as handle:
        table = csv.writer(handle)
        table.writerow(csv_header())
        table.writerows(csv_row(row) for row in rows)
