#!/usr/bin/env python3
"""Benchmark the loop on the demo model: bisect vs linear, rerun from cache, generation speed, peak memory.

Everything is measured in this one run, on this machine, and printed as ratios so that a noisy shared machine
changes the absolute seconds more than the comparisons:

1. calibrate: a linear walk over every level (loose target) measures each level's degradation; the degradation
   target is then set between q4_K_M and the first more aggressive level, so q4_K_M is the answer;
2. linear and bisect, cold (each on a fresh database): wall time, levels evaluated, answer;
3. linear and bisect, warm baseline: each starts from a copy of a database that holds only the baseline's answers
   (a run whose size target excludes every level), so the comparison is of the searches themselves;
4. bisect again on the database of its cold run (rerun from cache);
5. raw llama-cpp-python on the q4_K_M file with the same prompts and settings vs the orchestrator's own
   generation phase for q4_K_M (tokens/s, scoring included on the orchestrator's side);
6. peak RSS of each CLI run (the process and its children, sampled every 0.1 s).

Usage: python bench/loop_bench.py [--prompts 50] [--workdir DIR] [--json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from backends import EmbeddedLlamaCpp, GenerationSettings  # noqa: E402
from emotional_dataset_builder import EmotionalDatasetBuilder  # noqa: E402

CLI = ROOT / "pass1_quantization_loop.py"
LEVELS = ["q8_0", "q6_K", "q5_K_M", "q4_K_M", "q3_K_L", "q2_K"]


def run_cli(args: list[str], cwd: Path) -> dict:
    """Run the CLI, sampling the peak RSS of it and its children; return time, exit code, peak and summary."""
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(CLI), *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    peak = 0
    parent = psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            rss = parent.memory_info().rss + sum(c.memory_info().rss for c in parent.children(recursive=True))
            peak = max(peak, rss)
        except psutil.Error:
            pass
        time.sleep(0.1)
    _, err = proc.communicate()
    wall = time.perf_counter() - started
    if proc.returncode not in (0, 1):
        raise SystemExit(f"CLI failed ({proc.returncode}): {err.strip()[-500:]}")
    out_dir = Path(args[args.index("--output-dir") + 1])
    summary_path = max(out_dir.glob("pass1_summary_*.json"), key=lambda p: p.stat().st_mtime)
    return {"wall_s": wall, "exit": proc.returncode, "peak_rss_mb": peak / 1e6,
            "summary": json.loads(summary_path.read_text())}


def measured(summary: dict) -> list[dict]:
    """Levels actually generated for (not skipped, inferred or fully answered from cache)."""
    return [it for it in summary["iterations"] if it["status"] in ("ok", "early_stopped", "failed")]


def answer(summary: dict) -> str | None:
    """The best level's name, or None."""
    return (summary.get("best_result") or {}).get("quant_level")


def pick_threshold(summary: dict) -> float:
    """A degradation target between q4_K_M and the more aggressive levels so that q4_K_M is the answer."""
    degr = {it["quant_level"]: it["degradation"] for it in summary["iterations"] if it["degradation"] is not None}
    upto_q4 = max(degr[name] for name in LEVELS[:4])
    beyond = min(degr[name] for name in LEVELS[4:] if name in degr)
    if not upto_q4 < beyond:
        raise SystemExit(f"measured degradations are not monotone around q4_K_M ({degr}); no degradation target "
                         "makes q4_K_M the answer on this machine's scores")
    return round((max(upto_q4, 0.0) + beyond) / 2, 4) if beyond > 0 else round(beyond, 4)


def raw_tokens_per_s(model: Path, prompts: list[str], settings: GenerationSettings) -> tuple[float, int]:
    """llama-cpp-python alone: load once, answer each prompt with the same settings; tokens per second."""
    backend = EmbeddedLlamaCpp()
    tokens = 0
    with backend.loaded(model, settings) as llm:
        started = time.perf_counter()
        for prompt in prompts:
            reply = llm.create_chat_completion(messages=settings.messages(prompt), temperature=settings.temperature,
                                               seed=settings.seed, max_tokens=settings.max_tokens,
                                               repeat_penalty=settings.repeat_penalty)
            tokens += reply["usage"]["completion_tokens"]
        elapsed = time.perf_counter() - started
    return tokens / elapsed, tokens


def main() -> int:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=50,
                        help="scenarios per level (default 50: with 25 the demo model's levels are within noise)")
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--max-degradation", type=float, help="skip calibration and use this target")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="pass1-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    common = ["--force", "--base-model", "smollm2-135m", "--evaluation-prompts", str(args.prompts), "--quiet"]

    def dirs(name: str) -> list[str]:
        return ["--output-dir", str(work / name / "models"), "--db", str(work / name / "t.db")]

    figures: dict = {"prompts": args.prompts, "workdir": str(work)}
    threshold = args.max_degradation
    if threshold is None:
        calib = run_cli(["--loop", "--strategy", "linear", "--max-degradation", "0.99", *common, *dirs("calib")],
                        work)
        threshold = pick_threshold(calib["summary"])
        figures["calibration"] = {it["quant_level"]: it["degradation"] for it in calib["summary"]["iterations"]}
    figures["max_degradation"] = threshold
    target = ["--max-degradation", str(threshold)]

    linear = run_cli(["--loop", "--strategy", "linear", *target, *common, *dirs("linear")], work)
    bisect = run_cli(["--loop", "--strategy", "bisect", "--keep-models", "all", *target, *common, *dirs("bisect")],
                     work)
    rerun = run_cli(["--loop", "--strategy", "bisect", *target, *common, *dirs("bisect")], work)

    # Warm baseline: one run evaluates only the baseline (every level is over a 1-byte size target), then each
    # strategy starts from its own copy of that database.
    run_cli(["--loop", "--target-size", "1e-9", *target, *common, *dirs("seed")], work)
    warm = {}
    for strategy in ("linear", "bisect"):
        (work / f"warm-{strategy}").mkdir(exist_ok=True)
        for name in ("t.db", "emotion_training_backup.json"):
            shutil.copy(work / "seed" / name, work / f"warm-{strategy}" / name)
        warm[strategy] = run_cli(["--loop", "--strategy", strategy, *target, *common, *dirs(f"warm-{strategy}")],
                                 work)

    q4 = next(it for it in bisect["summary"]["iterations"] if it["quant_level"] == "q4_K_M")
    log_rows = [json.loads(line) for line in Path(q4["responses_file"]).read_text().splitlines()]
    orchestrator_tokens = sum(row["completion_tokens"] for row in log_rows)
    orchestrator_tps = orchestrator_tokens / q4["timings"]["generate_s"]
    config = bisect["summary"]["config"]
    settings = GenerationSettings(max_tokens=config["max_tokens"], seed=config["seed"], n_ctx=config["n_ctx"],
                                  system_prompt=config["system_prompt"], repeat_penalty=config["repeat_penalty"])
    by_id = {s.id: s.prompt for s in EmotionalDatasetBuilder().dataset}
    raw_tps, raw_tokens = raw_tokens_per_s(Path(q4["model_path"]), [by_id[row["scenario_id"]] for row in log_rows],
                                           settings)

    figures.update({
        "linear": {"wall_s": linear["wall_s"], "levels_evaluated": len(measured(linear["summary"])),
                   "answer": answer(linear["summary"]), "peak_rss_mb": linear["peak_rss_mb"]},
        "bisect": {"wall_s": bisect["wall_s"], "levels_evaluated": len(measured(bisect["summary"])),
                   "answer": answer(bisect["summary"]), "peak_rss_mb": bisect["peak_rss_mb"],
                   "inferred": bisect["summary"]["inferred_levels"]},
        "warm_baseline": {name: {"wall_s": run["wall_s"], "levels_evaluated": len(measured(run["summary"])),
                                  "answer": answer(run["summary"])} for name, run in warm.items()},
        "rerun": {"wall_s": rerun["wall_s"], "answer": answer(rerun["summary"]), "cache": rerun["summary"]["cache"],
                  "peak_rss_mb": rerun["peak_rss_mb"]},
        "generation": {"orchestrator_tokens_per_s": orchestrator_tps, "orchestrator_tokens": orchestrator_tokens,
                       "raw_tokens_per_s": raw_tps, "raw_tokens": raw_tokens},
    })
    figures["ratios"] = {
        "linear_over_bisect_wall": linear["wall_s"] / bisect["wall_s"],
        "linear_over_bisect_cycles": figures["linear"]["levels_evaluated"] / figures["bisect"]["levels_evaluated"],
        "linear_over_bisect_wall_warm_baseline": warm["linear"]["wall_s"] / warm["bisect"]["wall_s"],
        "same_answer": figures["linear"]["answer"] == figures["bisect"]["answer"] == "q4_K_M"
        == answer(warm["linear"]["summary"]) == answer(warm["bisect"]["summary"]),
        "first_over_rerun_wall": bisect["wall_s"] / rerun["wall_s"],
        "orchestrator_over_raw_tokens_per_s": orchestrator_tps / raw_tps,
    }
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    r = figures["ratios"]
    print(f"demo model SmolLM2-135M-Instruct, {args.prompts} scenarios, degradation target {threshold:.2%}")
    if "calibration" in figures:
        print("calibration (linear walk, degradation per level): "
              + ", ".join(f"{k} {v:+.1%}" for k, v in figures["calibration"].items() if v is not None))
    for name in ("linear", "bisect"):
        f = figures[name]
        print(f"{name:7s} cold: {f['wall_s']:7.1f} s, {f['levels_evaluated']} levels evaluated, answer {f['answer']}, "
              f"peak RSS {f['peak_rss_mb']:.0f} MB")
    for name, f in figures["warm_baseline"].items():
        print(f"{name:7s} warm baseline: {f['wall_s']:7.1f} s, {f['levels_evaluated']} levels evaluated, "
              f"answer {f['answer']}")
    print(f"rerun   warm: {figures['rerun']['wall_s']:7.1f} s, answer {figures['rerun']['answer']}, "
          f"{figures['rerun']['cache']['responses_reused']} answers from cache, "
          f"peak RSS {figures['rerun']['peak_rss_mb']:.0f} MB")
    g = figures["generation"]
    print(f"generation q4_K_M: orchestrator {g['orchestrator_tokens_per_s']:.1f} tok/s ({g['orchestrator_tokens']} "
          f"tokens), raw llama-cpp-python {g['raw_tokens_per_s']:.1f} tok/s ({g['raw_tokens']} tokens)")
    print(f"ratios: linear/bisect wall {r['linear_over_bisect_wall']:.2f}x cold, "
          f"{r['linear_over_bisect_wall_warm_baseline']:.2f}x with the baseline cached, cycles "
          f"{r['linear_over_bisect_cycles']:.2f}x, same answer {r['same_answer']}; first/rerun "
          f"{r['first_over_rerun_wall']:.2f}x; orchestrator/raw tokens/s "
          f"{r['orchestrator_over_raw_tokens_per_s']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
