"""A self-contained HTML report of one evaluation, or of several configurations side by side.

One file, no scripts, no network: tables (every number explained beside it), plots drawn by matplotlib and embedded
as PNG (per-frame error and δ1, per-frame latency and ground-truth density, the sparsification curve; one colour per
configuration, line styles for what is drawn, legends outside the data), and the labelled thumbnails (RGB — or a
LiDAR's points over it — | prediction | GT | error, with their colour keys in metres and %) of the best, median and
worst frames. The head says which depth_node,
commit, date and command made it.
"""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path
from typing import Any, Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from depth_node.eval.metrics import LOWER_IS_BETTER, METRICS, MODES
from depth_node.eval.runner import (
    EVAL_STAGES,
    STAGES,
    EvalOptions,
    Evaluation,
    Evaluator,
    save_summary,
)

METRIC_LABELS = {"abs_rel": "AbsRel", "sq_rel": "SqRel", "rmse": "RMSE (m)", "rmse_log": "RMSE-log", "silog": "SILog",
                 "delta1": "δ1", "delta2": "δ2", "delta3": "δ3"}
MODE_LABELS = {"metric": "as published (metric)", "scale": "scale-aligned", "affine": "scale+shift in depth",
               "affine_disparity": "scale+shift in disparity"}

CSS = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1250px}
h1{font-size:22px;margin-bottom:4px} h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd;padding-bottom:4px}
table{border-collapse:collapse;font-size:13px;margin:8px 0} td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}
th{background:#f4f4f4} td.l,th.l{text-align:left} td.why{color:#666;text-align:left;max-width:460px} tr.head td{font-weight:bold;background:#fff8e0}
.muted{color:#777;font-size:13px} .warn{color:#a40;font-weight:bold} figure{margin:8px 0} figcaption{font-size:13px;color:#555;max-width:640px}
.thumbs img{display:block;margin-bottom:2px;max-width:100%} .grid{display:flex;gap:18px;flex-wrap:wrap} code{font-size:12px}
"""


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if isinstance(value, dict):
        return "<br>".join(f"{html.escape(str(k))}: {_fmt(v, digits)}" for k, v in value.items())
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1000 else f"{value:.0f}"
    return html.escape(str(value))


Series = tuple[str, Sequence[float], Sequence[float], int, str]  # label, xs, ys, colour index, line style


def line_chart(series: Sequence[Series], x_label: str, y_label: str, y_range: tuple[float | None, float | None] = (0.0, None),
               width_in: float = 6.2, height_in: float = 2.9) -> str:
    """An embedded PNG line chart: each series in colour ``C<index>`` (matplotlib's ten distinct colours) and its line
    style; non-finite points break the line (an isolated point is a dot); the legend sits under the axes."""
    drawable = [s for s in series if any(math.isfinite(x) and math.isfinite(y) for x, y in zip(s[1], s[2]))]
    if not drawable:
        return '<p class="muted">(nothing to plot)</p>'
    figure = Figure(figsize=(width_in, height_in), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    for label, xs, ys, colour, style in drawable:
        ys = [y if math.isfinite(y) else math.nan for y in ys]
        isolated = [i for i, y in enumerate(ys) if math.isfinite(y) and not any(
            0 <= j < len(ys) and math.isfinite(ys[j]) for j in (i - 1, i + 1))]
        line, = axes.plot(xs, ys, linestyle=style, color=f"C{colour % 10}", linewidth=1.6, label=label)
        if isolated:
            axes.plot([xs[i] for i in isolated], [ys[i] for i in isolated], "o", color=line.get_color(), markersize=3)
    axes.set_xlabel(x_label)
    axes.set_ylabel(y_label)
    axes.set_ylim(*y_range)
    axes.grid(True, color="#e6e6e6", linewidth=0.8)
    axes.set_axisbelow(True)
    figure.legend(loc="outside lower center", ncols=min(3, len(drawable)), fontsize=8, frameon=False)
    buffer = io.BytesIO()
    FigureCanvasAgg(figure).print_png(buffer)
    data = base64.b64encode(buffer.getvalue()).decode()
    return f"<img alt='{html.escape(y_label)} over {html.escape(x_label)}' src='data:image/png;base64,{data}'/>"


def _summary_table(summaries: Sequence[dict[str, Any]]) -> str:
    multi = len(summaries) > 1
    head = "<tr><th class='l'>alignment</th>" + ("<th class='l'>config</th>" if multi else "")
    head += "".join(f"<th>{METRIC_LABELS[m]}{' ↓' if m in LOWER_IS_BETTER else ' ↑'}</th>" for m in METRICS) + "</tr>"
    rows = []
    for mode in MODES:
        for summary in summaries:
            cls = " class='head'" if mode == summary["headline_mode"] else ""
            cells = "".join(f"<td>{_fmt(summary['metrics'][mode][m])}</td>" for m in METRICS)
            config = f"<td class='l'>{html.escape(summary['label'])}</td>" if multi else ""
            rows.append(f"<tr{cls}><td class='l'>{MODE_LABELS[mode]}</td>{config}{cells}</tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def _facts_table(summaries: Sequence[dict[str, Any]]) -> str:
    """The run's facts, one column per configuration, and what each number means beside it."""
    facts: list[tuple[str, Any, str]] = [
        ("model", lambda s: _fmt(s.get("model")), ""),
        ("backend / device", lambda s: _fmt(s.get("backend")), ""),
        ("model output", lambda s: _fmt(s.get("output_space")), "what the network predicts, before the node makes metres of it"),
        ("parameters file", lambda s: _fmt(s.get("params_file")), "every parameter's value is in metrics.json, 'parameters'"),
        ("bag", lambda s: _fmt(s.get("bag")), ""),
        ("topics", lambda s: _fmt(s.get("topics")), ""),
        ("evaluation range", lambda s: _fmt(s.get("eval_range")), "ground truth outside [min, max] metres (and the crop) is not scored"),
        ("headline alignment", lambda s: _fmt(s.get("headline_mode")), "the highlighted row above: the alignment that fits the model's output"),
        ("frames scored / images", lambda s: f"{s['frames']['scored']} / {s['frames']['images']}", ""),
        ("images without ground truth", lambda s: s["frames"]["without_ground_truth"], "no depth image within --slop of the image"),
        ("frames with nothing to score", lambda s: s["frames"]["unscored"],
         "ground truth present, but no valid prediction on it (NaN, or fewer than 2 pixels): counted in coverage as 0"),
        ("frames with errors", lambda s: s["frames"]["errors"], "listed in frames.csv, column 'error'"),
        ("frames dropped (live)", lambda s: s["frames"]["dropped"], "the node gave no answer in time"),
        ("live: node's own count received / processed / dropped", lambda s: _node_counts(s.get("node_diagnostics")),
         "from the node's last /diagnostics"),
        ("live: node's receive→publish ms p50 / p95", lambda s: _node_latency(s.get("node_diagnostics")), ""),
        ("coverage", lambda s: _fmt(s["coverage"]),
         "share of valid ground-truth pixels (in range) that got a valid prediction, over every frame with ground truth; 1 = all"),
        ("AUSE (AbsRel) ↓", lambda s: _fmt(s["ause_abs_rel"]),
         "area between the confidence's sparsification curve and the oracle's (below); 0 = confidence ranks errors perfectly"),
        ("AUSE of a random order", lambda s: _fmt(s.get("ause_random_abs_rel", math.nan)),
         "the same for a confidence that knows nothing: the AUSE above should be lower"),
        ("scale drift frame to frame |Δ ln s| ↓", lambda s: _fmt(s["temporal"]["scale_drift"]),
         "how much the scale that would fit the ground truth changes between frames: 0.01 ≈ 1 % flicker"),
        ("scale spread over the bag, std ln s ↓", lambda s: _fmt(s["temporal"]["scale_spread"]), "the same over the whole bag"),
        ("pipeline ms, median", lambda s: _fmt(s["pipeline_ms_p50"]), "the node's work per frame: model and every other stage"),
        ("frames / s (pipeline)", lambda s: _fmt(s["frames_per_s"], 3), "1000 ÷ the median above: what the node sustains here"),
        ("evaluation cost ÷ model time", lambda s: _fmt(s["eval_overhead_ratio"], 3),
         "read + decode + ground truth + scoring, divided by the model's own time: what scoring adds, not what the node costs"),
        ("wall time, s", lambda s: _fmt(s["wall_s"], 3), ""),
        ("made by", lambda s: _made_by(s.get("run")), "depth_node version, commit, date (UTC) and command"),
    ]
    head = ("<tr><th class='l'></th>" + "".join(f"<th class='l'>{html.escape(s['label'])}</th>" for s in summaries)
            + "<th class='l'>what it means</th></tr>")
    rows = [head]
    for label, get, why in facts:
        cells = "".join(f"<td class='l'>{get(s)}</td>" for s in summaries)
        rows.append(f"<tr><td class='l'>{label}</td>{cells}<td class='why'>{html.escape(why, quote=False)}</td></tr>")
    return f"<table>{''.join(rows)}</table>"


def _made_by(run: dict[str, Any] | None) -> str:
    if not run:
        return "—"
    return (f"depth_node {html.escape(str(run['depth_node_version']))}, commit {html.escape(str(run['commit'] or 'n/a (installed)'))}"
            f"<br>{html.escape(str(run['date_utc']))}<br><code>{html.escape(str(run['command']))}</code>")


def _node_counts(diagnostics: dict[str, str] | None) -> str:
    if not diagnostics:
        return "—"
    return " / ".join(html.escape(diagnostics.get(f"frames_{k}", "?")) for k in ("received", "processed", "dropped"))


def _node_latency(diagnostics: dict[str, str] | None) -> str:
    if not diagnostics:
        return "—"
    return f"{html.escape(diagnostics.get('processing_p50_ms', '?'))} / {html.escape(diagnostics.get('processing_p95_ms', '?'))}"


def _latency_table(summaries: Sequence[dict[str, Any]]) -> str:
    stages = [s for s in STAGES if any(s in x["latency_ms"] for x in summaries)]
    head = "<tr><th class='l'>stage</th>" + "".join(f"<th>{html.escape(s['label'])} p50</th><th>p95</th>" for s in summaries) + "</tr>"
    rows = [head]
    for stage in stages:
        note = " (evaluation)" if stage in EVAL_STAGES else ""
        cells = "".join(f"<td>{_fmt(s['latency_ms'].get(stage, {}).get('p50'), 3)}</td><td>{_fmt(s['latency_ms'].get(stage, {}).get('p95'), 3)}</td>"
                        for s in summaries)
        rows.append(f"<tr><td class='l'>{stage}{note}</td>{cells}</tr>")
    return f"<table>{''.join(rows)}</table>"


def _thumbnails(evaluation: Evaluation) -> str:
    mode = evaluation.headline
    scored = [r for r in evaluation.rows if r.score is not None and math.isfinite(r.score.metrics[mode]["abs_rel"])]
    if not scored:
        return '<p class="muted">(no scored frames)</p>'
    ranked = sorted(scored, key=lambda r: r.score.metrics[mode]["abs_rel"])
    picks = [("best", ranked[0]), ("median", ranked[len(ranked) // 2]), ("worst", ranked[-1])]
    parts = []
    for name, row in picks:
        path = evaluation.out_dir / "thumbs" / f"{row.index:06d}.jpg"
        if not path.is_file():
            continue
        data = base64.b64encode(path.read_bytes()).decode()
        parts.append(f"<figure><img alt='{name} frame' src='data:image/jpeg;base64,{data}'/><figcaption>{name}: frame "
                     f"{row.index}, AbsRel {row.score.metrics[mode]['abs_rel']:.3f}, δ1 {row.score.metrics[mode]['delta1']:.3f} "
                     f"({MODE_LABELS[mode]})</figcaption></figure>")
    legend = ("<p class='muted'>Each strip: RGB | predicted depth | ground truth (the same colours: the key under them, in "
              "metres, spans the GT's 2–98 % range) | |error| / GT after the headline alignment (key in %; 50 % or more is "
              "the brightest; black: no ground truth or no prediction).</p>")
    return legend + f"<div class='thumbs'>{''.join(parts)}</div>"


def render(evaluations: Sequence[Evaluation], summaries: Sequence[dict[str, Any]], title: str) -> str:
    """The HTML of one evaluation, or of several on the same bag (a comparison): configuration n is drawn in colour n."""
    warn = "".join(f"<p class='warn'>{html.escape(s['label'])}: interrupted — partial result over {s['frames']['images']} frames.</p>"
                   for s in summaries if s["interrupted"])
    frames = [[r.index for r in e.rows] for e in evaluations]
    error_plot = line_chart([(e.label, frames[n], [r.score.metrics[e.headline]["abs_rel"] if r.score else math.nan for r in e.rows], n, "-")
                             for n, e in enumerate(evaluations)], "frame", f"AbsRel ({MODE_LABELS[evaluations[0].headline]})")
    delta_plot = line_chart([(e.label, frames[n], [r.score.metrics[e.headline]["delta1"] if r.score else math.nan for r in e.rows], n, "-")
                             for n, e in enumerate(evaluations)], "frame", "δ1 (share of pixels within 25 %)", (0.0, 1.02))
    latency_plot = line_chart([(f"{e.label}: {stage}", frames[n], [r.timings_ms.get(stage, math.nan) for r in e.rows], n, style)
                               for n, e in enumerate(evaluations) for stage, style in (("infer", "-"), ("read", "--"))], "frame", "ms")
    density_plot = line_chart([(e.label, frames[n], [100 * r.gt_density for r in e.rows], n, "-") for n, e in enumerate(evaluations)],
                              "frame", "% of pixels with ground truth")
    sparsification = []
    for n, s in enumerate(summaries):
        curve = s["sparsification"]
        if curve["by_confidence"] is not None:
            fractions = [100 * f for f in curve["fractions"]]
            sparsification += [(f"{s['label']}: by confidence", fractions, curve["by_confidence"], n, "-"),
                               (f"{s['label']}: random order", fractions, [curve["by_confidence"][0]] * len(fractions), n, ":"),
                               (f"{s['label']}: oracle (by true error)", fractions, curve["oracle"], n, "--")]
    sparse_plot = line_chart(sparsification, "% of pixels removed (least confident first)", "AbsRel of the rest")
    thumbs = "".join(f"<h3>{html.escape(e.label)}</h3>{_thumbnails(e)}" if len(evaluations) > 1 else _thumbnails(e) for e in evaluations)
    made = summaries[0].get("run") if summaries else None
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title><style>{CSS}</style></head><body>
<h1>{html.escape(title)}</h1>
<p class="muted">depth_node evaluation{": " + _made_by(made).replace("<br>", " · ") if made else ""}. Metrics are means
over scored frames; the highlighted row is the alignment that fits the model's output; "as published" is what a
robot receives (see docs/evaluation.md for the definitions).</p>{warn}
<h2>Accuracy</h2>{_summary_table(summaries)}
<h2>Run</h2>{_facts_table(summaries)}
<h2>Per frame</h2><div class="grid"><figure>{error_plot}<figcaption>AbsRel per frame, lower is better (headline alignment;
gaps: no ground truth)</figcaption></figure>
<figure>{delta_plot}<figcaption>δ1 per frame: the share of pixels whose depth is within 25 % of the ground truth
(higher is better, 1 = all)</figcaption></figure>
<figure>{latency_plot}<figcaption>Time per frame: the model's forward pass (infer, solid) and reading the bag (read,
dashed)</figcaption></figure>
<figure>{density_plot}<figcaption>Ground-truth density per frame: the share of the depth's pixels that have ground truth
(a LiDAR's: a few %; near 0 with a wrong extrinsic — the thumbnails draw its points over the image)</figcaption></figure></div>
<h2>Confidence: sparsification</h2><figure>{sparse_plot}<figcaption>Remove the least confident pixels first and score
the rest (solid). The oracle (dashed) removes the truly worst first; the random order (dotted) keeps the error flat.
The closer the solid curve to the oracle, the better the confidence ranks errors; AUSE is the area between
them.</figcaption></figure>
<h2>Latency per stage (ms)</h2>{_latency_table(summaries)}
<h2>Best, median and worst frames</h2>{thumbs}
</body></html>
"""


def write_report(path: Path, evaluations: Sequence[Evaluation], summaries: Sequence[dict[str, Any]], title: str) -> Path:
    path.write_text(render(evaluations, summaries, title), encoding="utf-8")
    return path


def run_and_report(source: Any, config: Any, frames: Any, out_dir: Path, options: EvalOptions, label: str,
                   info: dict[str, Any], title: str, progress: Any = None) -> tuple[Evaluation, dict[str, Any]]:
    """One configuration on one bag, start to finish: run the :class:`Evaluator`; for a live node, add its own
    /diagnostics and stop it (also when the run fails); write ``metrics.json`` and ``report.html``."""
    try:
        evaluation = Evaluator(source, config, frames, out_dir, options, label, info).run(progress)
        if hasattr(source, "final_diagnostics"):  # what the node itself counted and measured
            evaluation.info["node_diagnostics"] = source.final_diagnostics()
    finally:
        if hasattr(source, "close"):
            source.close()
    summary = save_summary(evaluation)
    write_report(out_dir / "report.html", [evaluation], [summary], title)
    return evaluation, summary

