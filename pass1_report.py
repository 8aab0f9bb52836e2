"""Reading a run at a glance: the aligned results table, the one-sentence answer and the chart.

Everything here works from records (a summary or a run read back from the tracker), never from live state, so
``--print-last-results`` in a fresh process prints exactly what the loop printed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from emotion_metrics import METRIC_KEYS
from quant_levels import LEVEL_NAMES
from run_records import IterationResult

_METRIC_HEADERS = {
    "response_fluency": "fluency",
    "emotional_intensity": "intens",
    "emotional_match": "match",
    "empathy_score": "empathy",
    "metaphor_usage": "metaph",
    "sentiment_accuracy": "sentim",
}


def results_from_run(run: dict[str, Any]) -> tuple[IterationResult | None, list[IterationResult]]:
    """Split a tracker run (``EmotionTrainingTracker.get_run``) into its baseline and its level results."""
    records = [IterationResult.from_record(row) for row in run.get("iterations", [])]
    baseline = next((r for r in records if r.iteration == 0), None)
    return baseline, [r for r in records if r.iteration != 0]


def _num(value: float | None, fmt: str = "{:.3f}") -> str:
    return "-" if value is None else fmt.format(value)


def format_gb(value: float | None) -> str:
    """Sizes in GB: three decimals, or four significant digits below 1 GB so small models stay readable."""
    if value is None:
        return "-"
    return f"{value:.3f}" if value >= 1 else f"{value:.4g}"


def verdict(result: IterationResult) -> str:
    """PASS / FAIL / skipped / failed / early-stop / inferred pass|fail, for the table."""
    if result.status == "ok":
        return "PASS" if result.meets_size and result.meets_quality else "FAIL"
    if result.status == "inferred":
        return "inferred " + ("pass" if result.meets_quality else "fail")
    return {"early_stopped": "FAIL (early stop)"}.get(result.status, result.status)


def format_table(
    baseline: IterationResult | None,
    results: Sequence[IterationResult],
    *,
    best_level: str | None,
    target_size: float,
    max_degradation: float,
    mock: bool,
) -> str:
    """The aligned results table: one row per model, best marked with '*', reasons for skipped/failed below."""
    headers = ["", "level", "size GB", *(_METRIC_HEADERS[k] for k in METRIC_KEYS), "overall", "degr", "95% CI",
               "KLD", "score/GB", "result"]
    rows: list[list[str]] = []
    notes: list[str] = []
    ordered = ([baseline] if baseline else []) + sorted(results, key=lambda r: r.iteration)
    for result in ordered:
        metrics = result.metrics or {}
        is_baseline = result is baseline
        ci = result.degradation_ci
        rows.append([
            "*" if (best_level and result.quant_level == best_level and not is_baseline and result.status == "ok")
            else "",
            f"{result.quant_level} (base)" if is_baseline else result.quant_level,
            format_gb(result.size_gb if result.size_gb is not None else result.predicted_size_gb)
            + ("~" if result.size_gb is None and result.predicted_size_gb is not None else ""),
            *(_num(metrics.get(k)) for k in METRIC_KEYS),
            _num(result.overall_score),
            "baseline" if is_baseline else _num(result.degradation, "{:+.1%}"),
            f"[{ci[0]:+.1%}, {ci[1]:+.1%}]" if ci else "-",
            _num((result.fidelity or {}).get("kld_mean"), "{:.4f}"),
            _num(result.score_per_gb, "{:.3f}"),
            "" if is_baseline else verdict(result),
        ])
        if result.error or result.note:
            notes.append(f"  {result.quant_level}: {result.error or result.note}")
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]
    numeric = set(range(2, len(headers) - 1))

    def line(cells: Sequence[str]) -> str:
        pairs = enumerate(zip(cells, widths, strict=True))
        return "  ".join(c.rjust(w) if i in numeric else c.ljust(w) for i, (c, w) in pairs)

    out = [line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)]
    out.append(f"targets: size <= {target_size:g} GB, degradation < {max_degradation:.1%}"
               "   (~ = predicted size; 1 GB = 1e9 bytes)" + ("   [MOCK DATA]" if mock else ""))
    if notes:
        out.append("notes:")
        out.extend(notes)
    return "\n".join(line_.rstrip() for line_ in out)


def answer_sentence(best: dict[str, Any] | None, baseline: IterationResult | None, target_size: float,
                    max_degradation: float, mock: bool) -> str:
    """The run's answer in one sentence."""
    prefix = "[mock] " if mock else ""
    if best is None:
        return (f"{prefix}No level met both targets (size <= {target_size:g} GB and degradation < "
                f"{max_degradation:.1%}); see the table for the closest.")
    return (f"{prefix}Use {best['quant_level']}: {format_gb(best['size_gb'])} GB, overall {best['overall_score']:.3f}, "
            f"{best['degradation']:+.1%} vs baseline"
            + (f" {baseline.quant_level}" if baseline else "") + ".")


def write_chart(path: Path, baseline: IterationResult | None, results: Sequence[IterationResult], *,
                best_level: str | None, target_size: float, max_degradation: float, title: str) -> Path:
    """Size (GB) vs overall score per level, with the baseline, both targets and the chosen level marked (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measured = sorted((r for r in results if r.measured and r.size_gb is not None), key=lambda r: r.size_gb)
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    try:
        if measured:
            ax.plot([r.size_gb for r in measured], [r.overall_score for r in measured], "o-", color="#3b6ea8",
                    label="levels (measured)")
            stopped = [r for r in measured if r.status == "early_stopped"]
            if stopped:
                ax.plot([r.size_gb for r in stopped], [r.overall_score for r in stopped], "o", mfc="white",
                        color="#3b6ea8", label="stopped early (partial score)")
            for r in measured:
                ax.annotate(r.quant_level, (r.size_gb, r.overall_score), textcoords="offset points", xytext=(6, 6),
                            fontsize=9)
        if baseline and baseline.overall_score is not None:
            ax.axhline(baseline.overall_score, color="#555555", lw=1, ls="--",
                       label=f"baseline {baseline.quant_level} ({baseline.overall_score:.3f})")
            if baseline.size_gb:
                ax.plot([baseline.size_gb], [baseline.overall_score], "s", color="#555555", ms=7)
                ax.annotate(f"{baseline.quant_level} (base)", (baseline.size_gb, baseline.overall_score),
                            textcoords="offset points", xytext=(-8, -14), ha="right", fontsize=9)
            ax.axhline(baseline.overall_score * (1 - max_degradation), color="#c0392b", lw=1, ls=":",
                       label=f"degradation limit ({max_degradation:.0%})")
        xs = [r.size_gb for r in measured] + ([baseline.size_gb] if baseline and baseline.size_gb else [])
        if xs and target_size <= max(xs) * 1.5:
            ax.axvline(target_size, color="#e67e22", lw=1, ls=":", label=f"size target ({target_size:g} GB)")
        elif xs:  # far off to the right: say so rather than squash every point against the left edge
            ax.plot([], [], color="#e67e22", lw=1, ls=":", label=f"size target ({target_size:g} GB, off the chart)")
        best = next((r for r in measured if r.quant_level == best_level), None)
        if best:
            ax.plot([best.size_gb], [best.overall_score], marker="*", ms=18, color="#27ae60", ls="none",
                    label=f"chosen: {best.quant_level}")
        ax.set_xlabel("model size (GB, 1 GB = 1e9 bytes)")
        ax.set_ylabel("overall emotional score (0-1)")
        ax.set_title(title, fontsize=11)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path


def run_report(run: dict[str, Any]) -> dict[str, Any]:
    """A tracker run as the JSON ``--print-last-results --json`` prints: the table's content, machine-readable."""
    baseline, results = results_from_run(run)
    config = run.get("config") or {}
    best = run.get("best_result")
    return {
        "run_id": run["run_id"],
        "mode": run["mode"],
        "mock": bool(run["mock"]),
        "status": run["status"],
        "backend": run.get("backend"),
        "base_model": run.get("base_model"),
        "started_at": run["started_at"],
        "finished_at": run.get("finished_at"),
        "targets": {"target_size_gb": config.get("target_size"), "max_degradation": config.get("max_degradation")},
        "baseline": baseline.to_dict() if baseline else None,
        "iterations": [r.to_dict() | {"result": verdict(r)} for r in sorted(results, key=lambda r: r.iteration)],
        "best_result": best,
        "targets_met": run.get("targets_met"),
        "answer": answer_sentence(best, baseline, config.get("target_size", 0), config.get("max_degradation", 0),
                                  bool(run["mock"])) if run["status"] == "finished" else None,
        "summary_path": run.get("summary_path"),
    }


def history_lines(runs: Sequence[dict[str, Any]]) -> list[str]:
    """One line per run (newest first): date, base model, backend, best level, size, degradation, targets met."""
    rows = [["started", "run id", "mode", "base model", "backend", "best", "size GB", "degr", "targets"]]
    for run in runs:
        best = run.get("best_result") or {}
        met = run.get("targets_met")
        rows.append([
            str(run["started_at"])[:19].replace("T", " "),
            run["run_id"],
            run["mode"] + (" [mock]" if run["mock"] else ""),
            (run.get("base_model") or {}).get("name", "?"),
            run.get("backend") or "?",
            best.get("quant_level", "-"),
            format_gb(best.get("size_gb")),
            _num(best.get("degradation"), "{:+.1%}"),
            "running" if run["status"] == "running" else ("yes" if met else "no"),
        ])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]


def format_compare(run_a: dict[str, Any], run_b: dict[str, Any]) -> str:
    """Two runs side by side, level by level: size, overall score and degradation of each, and the winners."""
    _, results_a = results_from_run(run_a)
    _, results_b = results_from_run(run_b)
    by_a = {r.quant_level: r for r in results_a}
    by_b = {r.quant_level: r for r in results_b}
    levels = [name for name in LEVEL_NAMES if name in by_a or name in by_b]
    rows = [["level", "A size GB", "A overall", "A degr", "A result", "B size GB", "B overall", "B degr", "B result"]]
    for name in levels:
        cells = [name]
        for side in (by_a, by_b):
            r = side.get(name)
            cells += ["-", "-", "-", "-"] if r is None else [
                format_gb(r.size_gb if r.size_gb is not None else r.predicted_size_gb), _num(r.overall_score),
                _num(r.degradation, "{:+.1%}"), verdict(r)]
        rows.append(cells)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [f"A = {run_a['run_id']} ({(run_a.get('base_model') or {}).get('name')}, {run_a.get('backend')})",
             f"B = {run_b['run_id']} ({(run_b.get('base_model') or {}).get('name')}, {run_b.get('backend')})"]
    lines += ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))
              for row in rows]
    for tag, run in (("A", run_a), ("B", run_b)):
        best = run.get("best_result")
        lines.append(f"best {tag}: " + (f"{best['quant_level']} ({format_gb(best['size_gb'])} GB, "
                                        f"{best['degradation']:+.1%})" if best else "none"))
    return "\n".join(line.rstrip() for line in lines)
