"""A self-contained HTML report of one evaluation, or of several configurations side by side.

One file, no scripts, no network: tables, inline SVG plots (per-frame error, per-frame latency, sparsification
curve) and base64 JPEG thumbnails (RGB | prediction | GT | error) of the best, median and worst frames.
"""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path
from typing import Any, Sequence

from depth_node.eval.metrics import LOWER_IS_BETTER, METRICS, MODES
from depth_node.eval.runner import (
    EVAL_STAGES,
    STAGES,
    EvalOptions,
    Evaluation,
    Evaluator,
    save_summary,
)

COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e")
METRIC_LABELS = {"abs_rel": "AbsRel", "sq_rel": "SqRel", "rmse": "RMSE (m)", "rmse_log": "RMSE-log", "silog": "SILog",
                 "delta1": "δ1", "delta2": "δ2", "delta3": "δ3"}
MODE_LABELS = {"metric": "as published (metric)", "scale": "scale-aligned", "affine": "scale+shift in depth",
               "affine_disparity": "scale+shift in disparity"}

CSS = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:22px;margin-bottom:4px} h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd;padding-bottom:4px}
table{border-collapse:collapse;font-size:13px;margin:8px 0} td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}
th{background:#f4f4f4} td.l,th.l{text-align:left} tr.head td{font-weight:bold;background:#fff8e0}
.muted{color:#777;font-size:13px} .warn{color:#a40;font-weight:bold} figure{margin:8px 0} figcaption{font-size:13px;color:#555}
.thumbs img{display:block;margin-bottom:2px;max-width:100%} .grid{display:flex;gap:24px;flex-wrap:wrap}
"""


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if isinstance(value, dict):
        return "<br>".join(f"{html.escape(str(k))}: {_fmt(v, digits)}" for k, v in value.items())
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1000 else f"{value:.0f}"
    return html.escape(str(value))


def line_chart(series: Sequence[tuple[str, Sequence[float], Sequence[float]]], x_label: str, y_label: str,
               width: int = 560, height: int = 240) -> str:
    """An inline SVG line chart of (label, xs, ys) series; non-finite points break the line."""
    points = [(x, y) for _, xs, ys in series for x, y in zip(xs, ys) if math.isfinite(x) and math.isfinite(y)]
    if not points:
        return '<p class="muted">(nothing to plot)</p>'
    x0, x1 = min(p[0] for p in points), max(p[0] for p in points)
    y0, y1 = min(0.0, min(p[1] for p in points)), max(p[1] for p in points)
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1)
    left, right, top, bottom = 56, 12, 10, 36
    pw, ph = width - left - right, height - top - bottom

    def sx(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * pw

    def sy(y: float) -> float:
        return top + ph - (y - y0) / (y1 - y0) * ph

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-size="11">',
             f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="#fcfcfc" stroke="#bbb"/>']
    for i in range(5):  # y grid and labels
        yv = y0 + (y1 - y0) * i / 4
        parts.append(f'<line x1="{left}" x2="{left + pw}" y1="{sy(yv):.1f}" y2="{sy(yv):.1f}" stroke="#eee"/>'
                     f'<text x="{left - 4}" y="{sy(yv) + 4:.1f}" text-anchor="end">{yv:.3g}</text>')
    for i in range(5):
        xv = x0 + (x1 - x0) * i / 4
        parts.append(f'<text x="{sx(xv):.1f}" y="{top + ph + 14}" text-anchor="middle">{xv:.3g}</text>')
    parts.append(f'<text x="{left + pw / 2}" y="{height - 4}" text-anchor="middle">{html.escape(x_label)}</text>'
                 f'<text x="12" y="{top + ph / 2}" transform="rotate(-90 12 {top + ph / 2})" text-anchor="middle">{html.escape(y_label)}</text>')
    for n, (label, xs, ys) in enumerate(series):
        colour = COLOURS[n % len(COLOURS)]
        runs: list[list[str]] = [[]]
        for x, y in zip(xs, ys):
            if math.isfinite(x) and math.isfinite(y):
                runs[-1].append(f"{sx(x):.1f},{sy(y):.1f}")
            elif runs[-1]:
                runs.append([])
        for run in runs:
            if len(run) == 1:
                cx, cy = run[0].split(",")
                parts.append(f'<circle cx="{cx}" cy="{cy}" r="2.5" fill="{colour}"/>')
            elif run:
                parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.6" points="{" ".join(run)}"/>')
        parts.append(f'<rect x="{left + 8}" y="{top + 6 + 14 * n}" width="10" height="3" fill="{colour}"/>'
                     f'<text x="{left + 22}" y="{top + 11 + 14 * n}">{html.escape(label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


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
    keys = [("model", "model"), ("backend", "backend / device"), ("output_space", "model output"), ("params_file", "parameters file"),
            ("bag", "bag"), ("topics", "topics"), ("eval_range", "evaluation range"), ("headline_mode", "headline alignment")]
    head = "<tr><th class='l'></th>" + "".join(f"<th class='l'>{html.escape(s['label'])}</th>" for s in summaries) + "</tr>"
    rows = [head]
    for key, label in keys:
        cells = "".join(f"<td class='l'>{_fmt(s.get(key))}</td>" for s in summaries)
        rows.append(f"<tr><td class='l'>{label}</td>{cells}</tr>")
    extra = [("frames scored / images", lambda s: f"{s['frames']['scored']} / {s['frames']['images']}"),
             ("images without ground truth", lambda s: s["frames"]["without_ground_truth"]),
             ("frames with ground truth but nothing to score (no valid prediction on it)", lambda s: s["frames"]["unscored"]),
             ("frames with errors", lambda s: s["frames"]["errors"]),
             ("frames dropped (live: no answer in time)", lambda s: s["frames"]["dropped"]),
             ("live: node's own count received / processed / dropped", lambda s: _node_counts(s.get("node_diagnostics"))),
             ("live: node's receive→publish ms p50 / p95", lambda s: _node_latency(s.get("node_diagnostics"))),
             ("coverage (GT pixels with a prediction)", lambda s: _fmt(s["coverage"])),
             ("AUSE (AbsRel, headline alignment) ↓", lambda s: _fmt(s["ause_abs_rel"])),
             ("AUSE of a random order (same pixels)", lambda s: _fmt(s.get("ause_random_abs_rel", math.nan))),
             ("scale drift frame to frame |Δ ln s| ↓", lambda s: _fmt(s["temporal"]["scale_drift"])),
             ("scale spread over the bag, std ln s ↓", lambda s: _fmt(s["temporal"]["scale_spread"])),
             ("pipeline ms, median", lambda s: _fmt(s["pipeline_ms_p50"])),
             ("frames / s (pipeline)", lambda s: _fmt(s["frames_per_s"])),
             ("read + decode + GT + score ÷ model time", lambda s: _fmt(s["eval_overhead_ratio"])),
             ("wall time, s", lambda s: _fmt(s["wall_s"]))]
    for label, get in extra:
        rows.append(f"<tr><td class='l'>{label}</td>" + "".join(f"<td class='l'>{get(s)}</td>" for s in summaries) + "</tr>")
    return f"<table>{''.join(rows)}</table>"


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
    legend = ("<p class='muted'>Each strip: RGB | predicted depth | ground truth (same colours: GT's 2–98 % range) | "
              "|error| / GT after the headline alignment (black = no GT; bright = 50 % or more).</p>")
    return legend + f"<div class='thumbs'>{''.join(parts)}</div>"


def render(evaluations: Sequence[Evaluation], summaries: Sequence[dict[str, Any]], title: str) -> str:
    """The HTML of one evaluation, or of several on the same bag (a comparison)."""
    warn = "".join(f"<p class='warn'>{html.escape(s['label'])}: interrupted — partial result over {s['frames']['images']} frames.</p>"
                   for s in summaries if s["interrupted"])
    error_plot = line_chart([(f"{e.label} ({MODE_LABELS[e.headline]})", [r.index for r in e.rows],
                              [r.score.metrics[e.headline]["abs_rel"] if r.score else math.nan for r in e.rows])
                             for e in evaluations], "frame", "AbsRel")
    delta_plot = line_chart([(e.label, [r.index for r in e.rows],
                              [r.score.metrics[e.headline]["delta1"] if r.score else math.nan for r in e.rows])
                             for e in evaluations], "frame", "δ1")
    latency_plot = line_chart([(f"{e.label} {stage}", [r.index for r in e.rows], [r.timings_ms.get(stage, math.nan) for r in e.rows])
                               for e in evaluations for stage in ("infer", "read")], "frame", "ms")
    sparsification = []
    for s in summaries:
        curve = s["sparsification"]
        if curve["by_confidence"] is not None:
            fractions = [100 * f for f in curve["fractions"]]
            sparsification += [(f"{s['label']} by confidence", fractions, curve["by_confidence"]),
                               (f"{s['label']} random order", fractions, [curve["by_confidence"][0]] * len(fractions)),
                               (f"{s['label']} oracle (by true error)", fractions, curve["oracle"])]
    sparse_plot = line_chart(sparsification, "% of pixels removed (least confident first)", "AbsRel of the rest")
    thumbs = "".join(f"<h3>{html.escape(e.label)}</h3>{_thumbnails(e)}" if len(evaluations) > 1 else _thumbnails(e) for e in evaluations)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title><style>{CSS}</style></head><body>
<h1>{html.escape(title)}</h1>
<p class="muted">depth_node evaluation. Metrics are means over scored frames; the highlighted row is the alignment that
fits the model's output (see docs/evaluation.md for the definitions).</p>{warn}
<h2>Accuracy</h2>{_summary_table(summaries)}
<h2>Run</h2>{_facts_table(summaries)}
<h2>Per frame</h2><div class="grid"><figure>{error_plot}<figcaption>AbsRel per frame (headline alignment; gaps: no GT)</figcaption></figure>
<figure>{delta_plot}<figcaption>δ1 per frame</figcaption></figure>
<figure>{latency_plot}<figcaption>model (infer) and bag read time per frame</figcaption></figure></div>
<h2>Confidence: sparsification</h2><figure>{sparse_plot}<figcaption>The closer the confidence curve to the oracle, the better
the confidence ranks errors; AUSE is the area between them. Below the flat random-order line means that discarding
the least confident pixels lowers the error.</figcaption></figure>
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

