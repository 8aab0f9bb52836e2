"""Quantize and generate backends.

A backend turns the 16-bit base into each level's GGUF and has a model answer scenarios.  It knows nothing of
metrics or of the loop.  This module holds the protocol, the shared subprocess runner for quantizers (timeout,
process-group kill, no partial file left behind), the embedded llama-cpp-python backend and the mock backend; the
llama.cpp-binaries and Ollama backends live in their own modules.

The embedded backend runs ``llama_model_quantize`` in a child Python process (this file run as a script): a crash
or out-of-memory kill inside llama.cpp then fails that level instead of the whole loop, and a timeout can kill it.
Generation runs in process with llama-cpp-python's chat completion and the model's own chat template.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

from errors import BackendError
from quant_levels import Level

log = logging.getLogger(__name__)

DEFAULT_SYSTEM_PROMPT = (
    "You are a warm, emotionally attentive assistant. Reply to the person in a few sentences, "
    "acknowledging how they feel."
)
# llama.cpp's quantizer prints one "[  12/ 272] name ..." line per tensor; used for progress.
_TENSOR_LINE = re.compile(r"^\[\s*(\d+)/\s*(\d+)\]")
ProgressFn = Callable[[int, int], None]


class LevelFailure(Exception):
    """One level could not be quantized or run; the loop records it as failed and goes on."""


@dataclass(frozen=True)
class GenerationSettings:
    """Everything that decides a model's answer besides the model and the prompt (part of the cache key)."""

    max_tokens: int = 200
    temperature: float = 0.0
    seed: int = 42
    n_ctx: int = 2048
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    # Ollama's default (and llama.cpp's classic one): greedy decoding of small or heavily quantized models falls
    # into loops without it, and a loop then says more about decoding than about the quantization.
    repeat_penalty: float = 1.1

    def key(self) -> str:
        """A stable hash of the settings."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]

    def messages(self, prompt: str) -> list[dict[str, str]]:
        """The chat messages for one scenario prompt."""
        messages = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        return [*messages, {"role": "user", "content": prompt}]


@dataclass
class Generation:
    """One answer, or the error that prevented it (never both)."""

    scenario_id: str
    response: str | None
    error: str | None = None
    generate_s: float = 0.0
    completion_tokens: int = 0
    finish_reason: str | None = None


@dataclass
class ModelHandle:
    """A model a backend can answer with: a GGUF path, and for server backends the name it is served under."""

    path: Path | None
    name: str
    size_bytes: int
    extra: dict = field(default_factory=dict)


class Backend(Protocol):
    """What the orchestrator needs from a backend.

    The orchestrator quantizes each level with ``quantize`` (file to file) unless the level is in
    ``native_levels``, in which case it calls ``load(base_path, label, level=level)`` and the backend makes the level
    itself (Ollama's own quantizer).  ``load`` makes a model answerable; its ``size_bytes`` is the level's size.
    """

    name: str
    native_levels: frozenset[str]

    def describe(self) -> dict:
        """What the summary records about the backend (name, version, host, ...)."""

    def quantize(self, src: Path, dst: Path, ftype: int, *, allow_requantize: bool = False,
                 progress: ProgressFn | None = None) -> None:
        """Write ``dst`` as ``src`` quantized to llama.cpp ftype ``ftype``; raise LevelFailure on failure."""

    def load(self, path: Path | None, label: str, *, level: Level | None = None) -> ModelHandle:
        """Make a model answerable (a no-op for file backends; an import into Ollama); LevelFailure on failure."""

    def generate(self, model: ModelHandle, prompts: Sequence[tuple[str, str]], settings: GenerationSettings,
                 on_result: Callable[[Generation], bool] | None = None) -> list[Generation]:
        """Answer (scenario_id, prompt) pairs, returned in input order; ``on_result`` returning False stops early.

        A failed answer is a Generation with ``error`` set and ``response`` None, never an invented reply.
        """

    def release(self, model: ModelHandle, *, delete: bool) -> None:
        """Unload the model, and for server backends delete what ``load`` created when ``delete``."""


# ---------------------------------------------------------------------------------------------------------------
# Running quantizers as child processes.


def partial_path(dst: Path) -> Path:
    """Where a quantizer writes before the file is complete (renamed to ``dst`` only on success)."""
    return dst.with_name(dst.name + ".partial")


_MARKER_SUFFIX = ".quantizer.json"


def _marker_path(dst: Path) -> Path:
    """Beside a running quantizer's output: its PID and start time, so a run killed with -9 can be cleaned up."""
    return dst.with_name(dst.name + _MARKER_SUFFIX)


def _process_start(pid: int) -> float | None:
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def reap_stale_quantizers(directory: Path) -> list[str]:
    """Stop quantizers left running by a killed run in ``directory`` and remove every partial file there.

    Call only while holding the directory's run lock: then no live run of ours owns a ``.partial`` file.  A marker's
    process group is killed only when its PID still belongs to the process that was started (same start time).
    Returns one note per quantizer stopped.
    """
    notes = []
    for marker in directory.glob("*" + _MARKER_SUFFIX):
        try:
            data = json.loads(marker.read_text(encoding="utf-8"))
            pid, started = int(data["pid"]), float(data["started"])
        except (OSError, ValueError, KeyError, TypeError):
            pid, started = 0, 0.0
        now_started = _process_start(pid) if pid > 0 else None
        if now_started is not None and abs(now_started - started) < 1.0:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
                notes.append(f"stopped quantizer PID {pid} left running by an interrupted run")
        marker.unlink(missing_ok=True)
    for partial in directory.glob("*.partial"):
        partial.unlink(missing_ok=True)
    return notes


def run_quantizer(
    cmd: Sequence[str],
    dst: Path,
    *,
    timeout: float | None,
    progress: ProgressFn | None = None,
    env: dict[str, str] | None = None,
) -> None:
    """Run a quantizer command that writes ``partial_path(dst)``; on success rename it to ``dst``.

    The command runs without a shell in its own process group, so a timeout kills it and any children.  Whatever
    happens, no partial file survives; a failure raises LevelFailure carrying the tail of the tool's output.
    """
    partial = partial_path(dst)
    partial.unlink(missing_ok=True)
    tail: deque[str] = deque(maxlen=12)
    log.debug("running %s", cmd)
    try:
        proc = subprocess.Popen(
            list(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, env=env, text=True, errors="replace",
        )
    except OSError as exc:
        raise LevelFailure(f"cannot run {cmd[0]}: {exc.strerror or exc}") from None
    marker = _marker_path(dst)
    with contextlib.suppress(OSError):
        marker.write_text(json.dumps({"pid": proc.pid, "started": _process_start(proc.pid)}), encoding="utf-8")

    def reader() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip()
            tail.append(line)
            match = _TENSOR_LINE.match(line)
            if match and progress is not None:
                progress(int(match.group(1)), int(match.group(2)))

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    try:
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            raise LevelFailure(f"quantization timed out after {timeout:g} s; last output: {_tail(tail)}") from None
        except BaseException:
            _kill_group(proc)  # Ctrl-C: do not leave the quantizer running behind us
            raise
        thread.join(timeout=5)
        if code != 0:
            reason = f"killed by signal {-code}" if code < 0 else f"exit status {code}"
            if code in (-signal.SIGKILL, 137):
                reason += " (out of memory?)"
            raise LevelFailure(f"{_disk_full_note(dst)}quantizer failed ({reason}): {_tail(tail)}")
        if not partial.exists() or partial.stat().st_size == 0:
            raise LevelFailure(f"quantizer exited 0 but wrote no output: {_tail(tail)}")
        os.replace(partial, dst)
    finally:
        partial.unlink(missing_ok=True)
        marker.unlink(missing_ok=True)


def _disk_full_note(dst: Path) -> str:
    """'disk full (...): ' when the output's filesystem has (almost) no room left, checked before the partial file
    is removed; '' otherwise."""
    try:
        free = shutil.disk_usage(dst.parent).free
    except OSError:
        return ""
    return f"disk full ({free / 1e6:.1f} MB free in {dst.parent}): " if free < 4 * 2**20 else ""


def _tail(lines: deque[str]) -> str:
    text = " | ".join(line for line in lines if line.strip())
    return text[-600:] if text else "(no output)"


def _kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


# ---------------------------------------------------------------------------------------------------------------
# Embedded llama.cpp (llama-cpp-python).


def llama_cpp_available() -> bool:
    """True when llama-cpp-python is installed (without importing its native library)."""
    import importlib.util

    return importlib.util.find_spec("llama_cpp") is not None


class EmbeddedLlamaCpp:
    """llama-cpp-python: ``llama_model_quantize`` in a child process, chat completion in process."""

    name = "llama.cpp"
    native_levels: frozenset[str] = frozenset()

    def __init__(self, *, threads: int | None = None, quant_timeout: float | None = None) -> None:
        if not llama_cpp_available():
            raise BackendError(
                "llama-cpp-python is not installed: pip install llama-cpp-python==0.3.36 "
                "(or pass --quant-tool with a llama-quantize path, or --quant-tool ollama)"
            )
        self.threads = threads or max(1, os.cpu_count() or 1)
        self.quant_timeout = quant_timeout

    def quantize(self, src: Path, dst: Path, ftype: int, *, allow_requantize: bool = False,
                 progress: ProgressFn | None = None) -> None:
        """Quantize in a child Python process running this module's ``quantize`` entry point."""
        cmd = [sys.executable, str(Path(__file__).resolve()), "quantize", str(src), str(partial_path(dst)),
               str(ftype), str(self.threads), "1" if allow_requantize else "0"]
        env = {**os.environ, _PARENT_ENV: str(os.getpid())}
        run_quantizer(cmd, dst, timeout=self.quant_timeout, progress=progress, env=env)

    def describe(self) -> dict:
        """Backend name and llama-cpp-python version."""
        return {"name": self.name, "kind": "embedded", "llama_cpp_python": _package_version("llama-cpp-python")}

    def load(self, path: Path | None, label: str, *, level: Level | None = None) -> ModelHandle:
        """Files are answered directly; loading happens in ``generate``."""
        assert path is not None
        return ModelHandle(path=path, name=label, size_bytes=path.stat().st_size)

    def generate(self, model: ModelHandle, prompts: Sequence[tuple[str, str]], settings: GenerationSettings,
                 on_result: Callable[[Generation], bool] | None = None) -> list[Generation]:
        """Load the model, answer each prompt at temperature 0 with a fixed seed, then free it."""
        assert model.path is not None
        results: list[Generation] = []
        with self.loaded(model.path, settings) as llm:
            for scenario_id, prompt in prompts:
                result = self._answer(llm, scenario_id, prompt, settings)
                results.append(result)
                if on_result is not None and on_result(result) is False:
                    break
        return results

    @contextlib.contextmanager
    def loaded(self, path: Path, settings: GenerationSettings, **kwargs) -> Iterator[object]:
        """A loaded llama_cpp.Llama for ``path``, closed on exit so one model is in memory at a time."""
        with quiet_llama_logs():
            from llama_cpp import Llama

            try:
                llm = Llama(model_path=str(path), n_ctx=settings.n_ctx, seed=settings.seed, n_threads=self.threads,
                            verbose=False, **kwargs)
            except (ValueError, RuntimeError, OSError) as exc:
                raise LevelFailure(f"llama.cpp could not load {path.name}: {exc}") from None
        try:
            yield llm
        finally:
            llm.close()
            del llm

    @staticmethod
    def _answer(llm, scenario_id: str, prompt: str, settings: GenerationSettings) -> Generation:
        started = time.perf_counter()
        try:
            reply = llm.create_chat_completion(
                messages=settings.messages(prompt), temperature=settings.temperature, seed=settings.seed,
                max_tokens=settings.max_tokens, repeat_penalty=settings.repeat_penalty,
            )
        except Exception as exc:  # noqa: BLE001 - any failure of one answer is recorded, never invented around
            return Generation(scenario_id, None, f"{type(exc).__name__}: {exc}", time.perf_counter() - started)
        choice = reply["choices"][0]
        return Generation(
            scenario_id,
            choice["message"].get("content") or "",
            None,
            time.perf_counter() - started,
            int(reply.get("usage", {}).get("completion_tokens", 0)),
            choice.get("finish_reason"),
        )

    def release(self, model: ModelHandle, *, delete: bool) -> None:
        """Nothing stays loaded between calls to ``generate``."""


@contextlib.contextmanager
def quiet_llama_logs() -> Iterator[None]:
    """Keep llama.cpp's load-time chatter off the user's terminal unless LOG_LEVEL=DEBUG."""
    import llama_cpp._logger as llama_logger

    llama_logger.set_verbose(log.isEnabledFor(logging.DEBUG))
    yield


_PARENT_ENV = "PASS1_PARENT_PID"


def _exit_with_parent(output: Path) -> None:
    """If the process that started us dies (kill -9), remove our partial output and exit instead of running on."""
    parent = int(os.environ.get(_PARENT_ENV) or os.getppid())

    def watch() -> None:
        while True:
            if os.getppid() != parent:
                output.unlink(missing_ok=True)
                os._exit(1)
            time.sleep(0.5)

    threading.Thread(target=watch, daemon=True).start()


def _quantize_main(argv: list[str]) -> int:
    """Child-process entry: ``backends.py quantize SRC DST FTYPE THREADS ALLOW_REQUANTIZE``."""
    src, dst, ftype, threads, allow = argv
    _exit_with_parent(Path(dst))
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = int(ftype)
    params.nthread = int(threads)
    params.allow_requantize = allow == "1"
    code = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(params))
    if code != 0:
        print(f"llama_model_quantize returned {code}", file=sys.stderr)
    return 1 if code != 0 else 0


# ---------------------------------------------------------------------------------------------------------------
# Mock: no model at all.  Sizes are bits-per-weight x parameters; answers are canned and get worse with fewer bits.

_MOCK_GOOD = (
    "I'm so sorry you're going through this. It makes complete sense that you feel this way, and your feelings "
    "are valid. It can feel like carrying a heavy weight, but you don't have to carry it alone. "
    "Would you like to tell me more about what has been hardest?"
)
_MOCK_JOY = (
    "That's wonderful news, congratulations! You must feel so proud and happy, and you deserve it. "
    "It sounds like all your hard work finally paid off. How are you going to celebrate?"
)


class MockBackend:
    """For fast development and logic tests: writes no model files and loads nothing; every output says mock."""

    name = "mock"
    native_levels: frozenset[str] = frozenset()

    def __init__(self, parameter_count: float, fail_levels: Sequence[str] = ()) -> None:
        self.parameter_count = parameter_count
        self.fail_levels = {name.lower() for name in fail_levels}

    def size_bytes(self, bits_per_weight: float) -> int:
        """The mock file size for a level: parameters x bits / 8."""
        return int(self.parameter_count * bits_per_weight / 8)

    def quantize(self, src: Path, dst: Path, ftype: int, *, allow_requantize: bool = False,
                 progress: ProgressFn | None = None) -> None:
        """Nothing is written in mock mode."""

    def describe(self) -> dict:
        """Mock backend description."""
        return {"name": self.name, "kind": "mock", "parameter_count": self.parameter_count}

    def load(self, path: Path | None, label: str, *, level: Level | None = None) -> ModelHandle:
        """Mock handles carry the label; their size comes from the level table."""
        from quant_levels import LEVELS

        if label.lower() in self.fail_levels:
            raise LevelFailure(f"mock failure requested for {label}")
        bits = {level.name: level.bits_per_weight for level in LEVELS}.get(label, 16.0)
        return ModelHandle(path=None, name=label, size_bytes=self.size_bytes(bits), extra={"bits": bits})

    def generate(self, model: ModelHandle, prompts: Sequence[tuple[str, str]], settings: GenerationSettings,
                 on_result: Callable[[Generation], bool] | None = None) -> list[Generation]:
        """Canned replies, degraded by dropping and repeating sentences as bits fall."""
        bits = float(model.extra.get("bits", 16.0))
        results = []
        for index, (scenario_id, prompt) in enumerate(prompts):
            results.append(Generation(scenario_id, mock_reply(prompt, bits, index), None, 0.0, 0, "stop"))
            if on_result is not None and on_result(results[-1]) is False:
                break
        return results

    def release(self, model: ModelHandle, *, delete: bool) -> None:
        """Nothing to release."""


def mock_reply(prompt: str, bits: float, index: int) -> str:
    """A canned reply whose quality falls with fewer bits (deterministic)."""
    positive = any(word in prompt.lower() for word in ("got", "passed", "finally", "won", "accepted", "proud"))
    sentences = re.split(r"(?<=[.!?])\s+", _MOCK_JOY if positive else _MOCK_GOOD)
    if bits >= 8:
        return " ".join(sentences)
    if bits >= 5.5:
        return " ".join(sentences[:-1]) if index % 3 == 0 else " ".join(sentences)
    if bits >= 4.5:
        return " ".join(sentences[:-1])
    if bits >= 4:
        return " ".join(sentences[:2])
    return " ".join([sentences[0]] * 4) + " " + sentences[1][: len(sentences[1]) // 2]


def _package_version(name: str) -> str | None:
    import importlib.metadata

    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


_QUANT_SIZE = re.compile(r"quant size\s*=\s*([0-9.]+)\s*MiB")


def dry_run_tensor_bytes(src: Path, ftype: int, *, timeout: float = 300) -> int | None:
    """Tensor bytes llama.cpp would write quantizing ``src`` to ``ftype`` (its own dry run; nothing is written).

    Uses the same child-process entry as quantization; None when this llama.cpp has no dry run or it failed.
    """
    cmd = [sys.executable, str(Path(__file__).resolve()), "dry-run", str(src), str(ftype)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.debug("dry run failed: %s", exc)
        return None
    match = _QUANT_SIZE.search(done.stdout + done.stderr)
    if done.returncode != 0 or not match:
        log.debug("dry run gave no size (exit %s)", done.returncode)
        return None
    return int(float(match.group(1)) * 1024 * 1024)


def _dry_run_main(argv: list[str]) -> int:
    src, ftype = argv
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    if not hasattr(params, "dry_run"):
        return 1
    params.ftype = int(ftype)
    params.allow_requantize = True
    params.dry_run = True
    return 1 if llama_cpp.llama_model_quantize(src.encode(), b"/dev/null", ctypes.byref(params)) != 0 else 0


if __name__ == "__main__":
    entries = {"quantize": _quantize_main, "dry-run": _dry_run_main}
    if len(sys.argv) >= 2 and sys.argv[1] in entries:
        sys.exit(entries[sys.argv[1]](sys.argv[2:]))
    print("usage: backends.py quantize SRC DST FTYPE THREADS ALLOW_REQUANTIZE | dry-run SRC FTYPE", file=sys.stderr)
    sys.exit(2)
