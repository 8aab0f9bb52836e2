"""The llama.cpp-binaries backend against fake ``llama-quantize`` and ``llama-server`` executables.

Nothing is patched: the fakes in tests/fake_bin are real processes found on PATH, the backend talks to the fake
server over loopback TCP, and the assertions look at what a user would: the files left on disk, the answers and
their order, the error messages, and whether any process or port is left behind.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import time
from pathlib import Path

import pytest
from conftest import process_gone

import llamacpp_binaries
from backends import Generation, GenerationSettings, LevelFailure, partial_path
from errors import BackendError
from llamacpp_binaries import LlamaCppBinaries
from quant_levels import LEVELS, get_level

FAKE_BIN = Path(__file__).resolve().parent / "fake_bin"
SETTINGS = GenerationSettings(max_tokens=64, temperature=0.0, seed=7)


@pytest.fixture(autouse=True)
def fake_tools(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fake executables first on PATH (and executable), with none of their test switches set."""
    for tool in FAKE_BIN.iterdir():
        tool.chmod(tool.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    monkeypatch.setenv("PATH", f"{FAKE_BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    for name in ("FAKE_QUANT_MODE", "FAKE_QUANT_LOG", "FAKE_QUANT_PIDS", "FAKE_SERVER_MODE", "FAKE_SERVER_LOG"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def base_gguf(tmp_path: Path) -> Path:
    """A stand-in 16-bit base file (the fake quantizer only copies bytes)."""
    path = tmp_path / "tiny-llama-f16.gguf"
    path.write_bytes(b"GGUF" + bytes(range(256)) * 400)
    return path


@pytest.fixture
def level_gguf(tmp_path: Path) -> Path:
    """A stand-in quantized level for the fake server to serve."""
    path = tmp_path / "tiny-llama-q4_K_M.gguf"
    path.write_bytes(b"GGUF" + b"\0" * 4096)
    return path


@pytest.fixture
def server_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where the fake llama-server records its start and every request."""
    path = tmp_path / "server.jsonl"
    monkeypatch.setenv("FAKE_SERVER_LOG", str(path))
    return path


def make_backend(**kwargs: object) -> LlamaCppBinaries:
    options: dict = {"threads": 3, "quant_timeout": 60, "parallel": 2, **kwargs}
    return LlamaCppBinaries(None, **options)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def server_start(path: Path) -> dict:
    starts = [entry for entry in read_jsonl(path) if entry["event"] == "start"]
    assert len(starts) == 1, "exactly one llama-server per generate call"
    return starts[0]


def chat_bodies(path: Path) -> list[dict]:
    return [entry["body"] for entry in read_jsonl(path)
            if entry["event"] == "request" and entry["path"] == "/v1/chat/completions"]


def port_closed(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except OSError:
        return True


def assert_server_stopped(log_path: Path) -> None:
    start = server_start(log_path)
    assert process_gone(start["pid"]), "llama-server is still running"
    assert port_closed(start["port"]), "something still listens on the server's port"


# ---------------------------------------------------------------------------------------------------------------
# Quantization


@pytest.mark.parametrize("level", LEVELS, ids=lambda level: level.name)
def test_quantize_writes_the_level_with_llama_quantize_type_and_threads(
    level, base_gguf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FAKE_QUANT_LOG", str(tmp_path / "quant.jsonl"))
    dst = tmp_path / f"tiny-llama-{level.name}.gguf"
    progress: list[tuple[int, int]] = []

    make_backend().quantize(base_gguf, dst, level.ftype, progress=lambda done, total: progress.append((done, total)))

    assert dst.is_file() and 0 < dst.stat().st_size < base_gguf.stat().st_size
    assert not partial_path(dst).exists()
    (call,) = read_jsonl(tmp_path / "quant.jsonl")
    assert call["argv"][1:] == [str(base_gguf), str(partial_path(dst)), level.name.upper(), "3"]
    assert progress[-1] == (10, 10)


def test_requantizing_passes_allow_requantize(base_gguf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_QUANT_LOG", str(tmp_path / "quant.jsonl"))
    dst = tmp_path / "tiny-llama-q2_K.gguf"

    make_backend().quantize(base_gguf, dst, get_level("q2_K").ftype, allow_requantize=True)

    (call,) = read_jsonl(tmp_path / "quant.jsonl")
    assert call["argv"][1:3] == ["--allow-requantize", str(base_gguf)]
    assert dst.is_file()


def test_quantize_timeout_kills_the_tool_and_leaves_no_partial_file(
    base_gguf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FAKE_QUANT_MODE", "sleep")
    monkeypatch.setenv("FAKE_QUANT_PIDS", str(tmp_path / "pids"))
    dst = tmp_path / "tiny-llama-q8_0.gguf"
    started = time.monotonic()

    with pytest.raises(LevelFailure, match="timed out"):
        make_backend(quant_timeout=1).quantize(base_gguf, dst, get_level("q8_0").ftype)

    assert time.monotonic() - started < 15
    assert not dst.exists() and not partial_path(dst).exists()
    pids = [int(line) for line in (tmp_path / "pids").read_text().split()]
    assert len(pids) == 2  # the fake and the child it started
    assert all(process_gone(pid) for pid in pids), "the quantizer or its child survived the timeout"


def test_quantizer_crash_mid_write_fails_the_level_without_partial_file(
    base_gguf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FAKE_QUANT_MODE", "crash")
    dst = tmp_path / "tiny-llama-q6_K.gguf"

    with pytest.raises(LevelFailure, match="killed by signal 11"):
        make_backend().quantize(base_gguf, dst, get_level("q6_K").ftype)

    assert not dst.exists() and not partial_path(dst).exists()


def test_quantizer_error_is_reported_with_the_tools_own_words(
    base_gguf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FAKE_QUANT_MODE", "fail")
    dst = tmp_path / "tiny-llama-q5_K_M.gguf"

    with pytest.raises(LevelFailure) as failure:
        make_backend().quantize(base_gguf, dst, get_level("q5_K_M").ftype)

    assert "exit status 1" in str(failure.value)
    assert "model is corrupted or incomplete" in str(failure.value)
    assert not dst.exists() and not partial_path(dst).exists()


# ---------------------------------------------------------------------------------------------------------------
# Generation


def test_generate_answers_in_input_order_with_temperature_and_seed_then_stops_the_server(
    level_gguf: Path, server_log: Path,
) -> None:
    backend = make_backend()
    model = backend.load(level_gguf, "q4_K_M")
    # The first answer is slowed down so that, with two requests at a time, the second finishes first.
    prompts = [("s1", "[delay=0.5] My dog died yesterday."), ("s2", "I failed my exam."),
               ("s3", "I got the job!"), ("s4", "Nobody came to my party.")]
    seen: list[str] = []

    def on_result(result: Generation) -> bool:
        seen.append(result.scenario_id)
        return True

    results = backend.generate(model, prompts, SETTINGS, on_result)

    assert [r.scenario_id for r in results] == ["s1", "s2", "s3", "s4"] == seen
    for result, (_, prompt) in zip(results, prompts, strict=True):
        assert result.error is None
        assert result.response is not None and level_gguf.name in result.response and prompt in result.response
        assert result.completion_tokens > 0 and result.finish_reason == "stop"
    argv = server_start(server_log)["argv"]
    flags = dict(zip(argv[1::2], argv[2::2], strict=False))
    assert flags["-m"] == str(level_gguf) and flags["--host"] == "127.0.0.1"
    assert (flags["-np"], flags["-c"], flags["-t"], flags["--seed"]) == ("2", str(2 * SETTINGS.n_ctx), "3", "7")
    bodies = chat_bodies(server_log)
    assert len(bodies) == 4
    for body in bodies:
        assert (body["temperature"], body["seed"], body["max_tokens"]) == (0.0, 7, 64)
        assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert_server_stopped(server_log)


def test_on_result_false_stops_early_and_stops_the_server(level_gguf: Path, server_log: Path) -> None:
    backend = make_backend(parallel=1)
    prompts = [(f"s{i}", f"prompt {i}") for i in range(6)]

    results = backend.generate(backend.load(level_gguf, "q4_K_M"), prompts, SETTINGS, lambda result: False)

    assert [r.scenario_id for r in results] == ["s0"]
    assert len(chat_bodies(server_log)) < len(prompts)
    assert_server_stopped(server_log)


def test_ctrl_c_during_generation_still_stops_the_server(level_gguf: Path, server_log: Path) -> None:
    backend = make_backend()

    def interrupt(result: Generation) -> bool:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        backend.generate(backend.load(level_gguf, "q4_K_M"), [("s1", "hello"), ("s2", "hi")], SETTINGS, interrupt)

    assert_server_stopped(server_log)


def test_server_that_dies_while_loading_fails_the_level_with_its_log(
    level_gguf: Path, server_log: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FAKE_SERVER_MODE", "die")
    backend = make_backend()

    with pytest.raises(LevelFailure) as failure:
        backend.generate(backend.load(level_gguf, "q4_K_M"), [("s1", "hello")], SETTINGS)

    assert "exit status 1" in str(failure.value)
    assert "fake llama-server was told to die" in str(failure.value)
    assert chat_bodies(server_log) == []
    assert_server_stopped(server_log)


def test_server_not_ready_in_time_fails_the_level_and_is_stopped(level_gguf: Path, server_log: Path) -> None:
    backend = make_backend(server_start_timeout=0.1)  # the fake reports "Loading model" for 0.3 s

    with pytest.raises(LevelFailure, match=r"not ready after 0\.1 s"):
        backend.generate(backend.load(level_gguf, "q4_K_M"), [("s1", "hello")], SETTINGS)

    assert_server_stopped(server_log)


def test_chat_error_is_recorded_never_invented(
    level_gguf: Path, server_log: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FAKE_SERVER_MODE", "error500")
    backend = make_backend()

    results = backend.generate(backend.load(level_gguf, "q4_K_M"), [("s1", "hello"), ("s2", "hi")], SETTINGS)

    assert [r.scenario_id for r in results] == ["s1", "s2"]
    for result in results:
        assert result.response is None
        assert result.error is not None and "500" in result.error and "decode failed" in result.error
    assert_server_stopped(server_log)


def test_server_ignoring_sigterm_is_killed(
    level_gguf: Path, server_log: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FAKE_SERVER_MODE", "ignore-term")
    monkeypatch.setattr(llamacpp_binaries, "_STOP_GRACE_S", 0.5)
    backend = make_backend()

    results = backend.generate(backend.load(level_gguf, "q4_K_M"), [("s1", "hello")], SETTINGS)

    assert results[0].response is not None
    assert_server_stopped(server_log)


def test_load_reports_the_file_size(level_gguf: Path) -> None:
    model = make_backend().load(level_gguf, "q4_K_M")

    assert (model.path, model.name, model.size_bytes) == (level_gguf, "q4_K_M", level_gguf.stat().st_size)


# ---------------------------------------------------------------------------------------------------------------
# Finding the executables


def test_missing_llama_quantize_is_a_backend_error_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))

    with pytest.raises(BackendError, match=r"llama-quantize was not found.*--quant-tool"):
        make_backend()
    with pytest.raises(BackendError, match=r"llama-quantize was not found.*/opt/nowhere/llama-quantize"):
        LlamaCppBinaries(["/opt/nowhere/llama-quantize"], threads=1, quant_timeout=None)


def test_llama_server_is_found_next_to_the_quantize_binary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))

    backend = LlamaCppBinaries([str(FAKE_BIN / "llama-quantize")], threads=1, quant_timeout=None)

    assert backend.describe() == {"name": "llama.cpp-binaries", "kind": "binaries",
                                  "quantize": str(FAKE_BIN / "llama-quantize"),
                                  "server": str(FAKE_BIN / "llama-server")}


def test_missing_llama_server_is_a_backend_error_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, level_gguf: Path,
) -> None:
    only_quantize = tmp_path / "bin"
    only_quantize.mkdir()
    shutil.copy2(FAKE_BIN / "llama-quantize", only_quantize / "llama-quantize")
    monkeypatch.setenv("PATH", str(only_quantize))

    with pytest.raises(BackendError, match="llama-server was not found"):
        make_backend()
    # A quantize-only user (the Ollama backend's file quantizer) learns it only if it tries to generate.
    backend = make_backend(require_server=False)
    with pytest.raises(BackendError, match="llama-server was not found"):
        backend.generate(backend.load(level_gguf, "q4_K_M"), [("s1", "hello")], SETTINGS)
