"""The non-default backends through the real command line: Ollama, external llama.cpp binaries, and their errors.

Every run is ``pass1_quantization_loop.py`` in a fresh process on the tiny real GGUF.  Nothing is patched: the
Ollama server is the loopback fake of tests/fake_ollama_server.py (with its fake ``ollama`` CLI first on PATH) and
the llama.cpp tools are the fakes in tests/fake_bin.  The assertions read what a user (or the server) is left
with: the exit status, stderr, the summary, the files in the output directory, the requests the server received
and the processes still running.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import process_gone, run_cli
from fake_ollama_server import FakeOllama, RecordedRequest, canonical, install_fake_cli

from emotional_dataset_builder import EmotionalDatasetBuilder

needs_llama = pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None,
                                 reason="llama-cpp-python not installed")

FAKE_BIN = Path(__file__).resolve().parent / "fake_bin"
FAKE_QUANTIZE = FAKE_BIN / "llama-quantize"
FAKE_SERVER = FAKE_BIN / "llama-server"
LEVELS = ["q8_0", "q6_K", "q5_K_M", "q4_K_M", "q3_K_L", "q2_K"]
QUANTIZE_TYPES = {"q8_0": "Q8_0", "q6_K": "Q6_K", "q5_K_M": "Q5_K_M", "q4_K_M": "Q4_K_M", "q3_K_L": "Q3_K_L",
                  "q2_K": "Q2_K"}
EXIT_TARGETS_NOT_MET, EXIT_BACKEND = 1, 3
# --base-model tiny-llama-f16.gguf: Ollama names are "{file stem}-pass1-{label}" in Ollama's lower-case characters.
OLLAMA_NAMES = {"f16": "tiny-llama-f16-pass1-f16", "q8_0": "tiny-llama-f16-pass1-q8_0",
                "q6_K": "tiny-llama-f16-pass1-q6_k", "q5_K_M": "tiny-llama-f16-pass1-q5_k_m",
                "q4_K_M": "tiny-llama-f16-pass1-q4_k_m", "q3_K_L": "tiny-llama-f16-pass1-q3_k_l",
                "q2_K": "tiny-llama-f16-pass1-q2_k"}


# ---------------------------------------------------------------------------------------------------------------
# helpers


@pytest.fixture(autouse=True)
def executable_fakes() -> None:
    """The fake tools must be executable, as in a fresh checkout where git kept their mode."""
    for tool in FAKE_BIN.iterdir():
        tool.chmod(tool.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def _args(model: Path, work: Path, *extra: str | os.PathLike, prompts: int = 2) -> list[str | os.PathLike]:
    return ["--force", "--base-model", model, "--output-dir", work / "out", "--db", work / "t.db",
            "--evaluation-prompts", str(prompts), "--max-tokens", "8", "--ctx-size", "512", *extra]


def _summary(out: Path) -> dict:
    [path] = sorted(out.glob("pass1_summary_*.json"))
    return json.loads(path.read_text(encoding="utf-8"))


def _one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: "), lines[0]
    return lines[0]


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _no_leftovers(out: Path) -> None:
    """No half-written level and no quantizer marker in the output directory."""
    assert not list(out.glob("*.partial")), sorted(p.name for p in out.iterdir())
    assert not list(out.glob("*.quantizer.json")), sorted(p.name for p in out.iterdir())


@pytest.fixture
def fake_tools_env(tmp_path: Path) -> dict[str, str]:
    """tests/fake_bin first on PATH, every fake switch set explicitly (nothing inherited from the caller)."""
    return {
        "PATH": f"{FAKE_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "FAKE_QUANT_MODE": "ok",
        "FAKE_QUANT_LOG": str(tmp_path / "quant.jsonl"),
        "FAKE_QUANT_PIDS": str(tmp_path / "quant.pids"),
        "FAKE_SERVER_MODE": "ok",
        "FAKE_SERVER_LOG": str(tmp_path / "server.jsonl"),
    }


# ---------------------------------------------------------------------------------------------------------------
# --quant-tool ollama


@pytest.fixture
def fake_ollama() -> FakeOllama:
    with FakeOllama() as server:
        yield server


def _ollama_env(fake: FakeOllama, tmp_path: Path) -> dict[str, str]:
    """The fake ``ollama`` CLI first on PATH and OLLAMA_HOST as ``host:port`` (no scheme) pointing at the fake."""
    install_fake_cli(tmp_path / "bin")
    return {"PATH": f"{tmp_path / 'bin'}{os.pathsep}{FAKE_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "OLLAMA_HOST": fake.address, "FAKE_QUANT_LOG": str(tmp_path / "quant.jsonl")}


def _indices(requests: list[RecordedRequest], name: str, *, kind: str) -> list[int]:
    """Positions in the trail of one model's create / chat (with messages) / unload (keep_alive 0) / delete."""
    found = []
    for index, request in enumerate(requests):
        body = request.body if isinstance(request.body, dict) else {}
        if body.get("model") != name:
            continue
        if kind == "create" and request.path == "/_fake/create":
            found.append(index)
        elif kind == "chat" and request.path == "/api/chat" and body.get("messages"):
            found.append(index)
        elif kind == "unload" and request.path == "/api/chat" and not body.get("messages") \
                and body.get("keep_alive") == 0:
            found.append(index)
        elif kind == "delete" and (request.method, request.path) == ("DELETE", "/api/delete"):
            found.append(index)
    return found


@needs_llama
@pytest.mark.parametrize(("keep", "native"), [("best", True), ("none", False)])
def test_ollama_loop_walks_every_level_through_the_server(tiny_model: Path, tmp_path: Path,
                                                          fake_ollama: FakeOllama, keep: str, native: bool):
    out = tmp_path / "out"
    prompts = 3
    native_levels = ["q8_0", "q4_K_M"] if native else []
    proc = run_cli("--loop", "--quant-tool", "ollama", "--strategy", "linear", "--max-degradation", "0.99",
                   "--seed", "7", "--system-prompt", "Be kind.", "--keep-models", keep,
                   *([] if native else ["--no-ollama-quantize"]),
                   *_args(tiny_model, tmp_path, prompts=prompts),
                   cwd=tmp_path, env=_ollama_env(fake_ollama, tmp_path), timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    summary = _summary(out)
    assert summary["backend"] == "ollama"
    info = summary["backend_info"]
    assert info["kind"] == "ollama" and info["host"] == fake_ollama.host and info["version"] == "0.12.6"
    # Ollama makes q8_0/q4_K_M from the 16-bit base itself (unless --no-ollama-quantize); the embedded llama.cpp
    # makes every other level's GGUF.
    assert info["native_levels"] == sorted(native_levels)
    assert info["file_quantizer"]["name"] == "llama.cpp"
    assert not (tmp_path / "quant.jsonl").exists(), "the fake llama-quantize on PATH must not be used"
    assert [it["quant_level"] for it in summary["iterations"]] == LEVELS
    assert all(it["status"] == "ok" and it["error"] is None for it in summary["iterations"]), summary["iterations"]
    assert summary["baseline"]["label"] == "f16"
    assert summary["targets_met"] is True

    requests = fake_ollama.requests
    creates = [r for r in requests if r.path == "/_fake/create"]
    assert [r.body["model"] for r in creates] == [OLLAMA_NAMES[label] for label in ["f16", *LEVELS]]
    for label, request in zip(["f16", *LEVELS], creates, strict=True):
        if label in native_levels:
            assert request.body["quantize"] == label and request.body["argv"][-2:] == ["--quantize", label]
        else:
            assert request.body["quantize"] is None and "--quantize" not in request.body["argv"]
        assert request.body["modelfile"] == f"FROM {request.body['from']}\n"
    # The baseline is the base file itself; each level is its own GGUF inside --output-dir, made from the base,
    # or (native) Ollama's own quantization of the base, which leaves no file and so no KL divergence.
    assert creates[0].body["from"] == str(tiny_model.resolve())
    iterations = {it["quant_level"]: it for it in summary["iterations"]}
    for level, request in zip(LEVELS, creates[1:], strict=True):
        source = Path(request.body["from"])
        if level in native_levels:
            assert source == tiny_model.resolve()
            assert iterations[level]["model_path"] is None and iterations[level]["fidelity"] is None
            assert "KLD not measured" in iterations[level]["note"]
            continue
        assert source.parent == out.resolve()
        assert source.name == f"tiny-llama_quantized_{level}_iter{iterations[level]['iteration']}.gguf"
        assert Path(iterations[level]["model_path"]).resolve() == source
        assert iterations[level]["fidelity"]["kld_mean"] >= 0

    scenario_prompts = {s.prompt for s in EmotionalDatasetBuilder().take(prompts)}
    labels = ["f16", *LEVELS]
    for position, label in enumerate(labels):
        name = OLLAMA_NAMES[label]
        [create] = _indices(requests, name, kind="create")
        chats = _indices(requests, name, kind="chat")
        unloads = _indices(requests, name, kind="unload")
        assert len(chats) == prompts, (label, [requests[i].body for i in chats])
        asked = set()
        for index in chats:
            body = requests[index].body
            assert body["stream"] is False
            assert body["options"] == {"temperature": 0.0, "seed": 7, "num_predict": 8, "num_ctx": 512,
                                       "repeat_penalty": 1.1}
            system, user = body["messages"]
            assert system == {"role": "system", "content": "Be kind."}
            assert user["role"] == "user"
            asked.add(user["content"])
        assert asked == scenario_prompts
        # unloaded (keep_alive 0) after its answers, before the next level is even created
        assert unloads and create < min(chats) and max(chats) < unloads[0]
        if position + 1 < len(labels):
            [next_create] = _indices(requests, OLLAMA_NAMES[labels[position + 1]], kind="create")
            assert unloads[0] < next_create

    best = summary["best_result"]
    smallest = min(summary["iterations"], key=lambda it: it["size_gb"])
    assert best["quant_level"] == smallest["quant_level"]
    assert fake_ollama.loaded == {}, "a model was left loaded in the server"
    level_files = sorted(p.name for p in out.glob("tiny-llama_quantized_*.gguf"))
    if keep == "best":
        kept = OLLAMA_NAMES[best["quant_level"]]
        assert set(fake_ollama.models) == {canonical(kept)}
        assert fake_ollama.model(kept).size == pytest.approx(best["size_gb"] * 1e9, rel=1e-6)
        assert not _indices(requests, kept, kind="delete")
        assert level_files == [Path(best["model_path"]).name]
        with Path(best["model_path"]).open("rb") as handle:
            assert handle.read(4) == b"GGUF"  # a real quantized GGUF, not a copy of the fake's bytes
    else:
        assert fake_ollama.models == {}
        assert level_files == []
    for label in labels:
        if keep == "none" or label != best["quant_level"]:
            assert _indices(requests, OLLAMA_NAMES[label], kind="delete"), f"{label} was not deleted"
    _no_leftovers(out)


def test_a_dead_ollama_server_is_one_line_naming_the_host(tiny_model: Path, tmp_path: Path):
    port = _unused_port()
    install_fake_cli(tmp_path / "bin")
    env = {"PATH": f"{tmp_path / 'bin'}{os.pathsep}{FAKE_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
           "OLLAMA_HOST": f"127.0.0.1:{port}"}
    started = time.monotonic()
    proc = run_cli("--loop", "--quant-tool", "ollama", *_args(tiny_model, tmp_path), cwd=tmp_path, env=env,
                   timeout=60)
    elapsed = time.monotonic() - started

    assert proc.returncode == EXIT_BACKEND, proc.stdout + proc.stderr
    line = _one_line_error(proc)
    assert f"http://127.0.0.1:{port}" in line and "ollama serve" in line
    assert elapsed < 10, f"took {elapsed:.1f} s to notice a closed port"
    assert not list((tmp_path / "out").glob("pass1_summary_*.json"))


def test_a_missing_ollama_executable_is_one_line_saying_how_to_get_it(tiny_model: Path, tmp_path: Path,
                                                                       fake_ollama: FakeOllama):
    # PATH holds python and a llama-quantize (so a file quantizer exists with or without llama-cpp-python),
    # but no ollama; the server itself is up.
    only = tmp_path / "only-python"
    only.mkdir()
    (only / "python3").symlink_to(sys.executable)
    (only / "llama-quantize").symlink_to(FAKE_QUANTIZE)
    proc = run_cli("--loop", "--quant-tool", "ollama", *_args(tiny_model, tmp_path), cwd=tmp_path,
                   env={"PATH": str(only), "OLLAMA_HOST": fake_ollama.address}, timeout=60)

    assert proc.returncode == EXIT_BACKEND, proc.stdout + proc.stderr
    line = _one_line_error(proc)
    assert "'ollama'" in line and "PATH" in line
    assert "https://ollama.com/download" in line
    assert fake_ollama.requests == [], "nothing should reach the server once the CLI is known to be missing"


# ---------------------------------------------------------------------------------------------------------------
# --quant-tool PATH (llama.cpp binaries)


def _binaries_loop(tiny_model: Path, tmp_path: Path, env: dict[str, str], *extra: str) -> subprocess.CompletedProcess:
    return run_cli("--loop", "--quant-tool", FAKE_QUANTIZE, "--strategy", "linear", "--max-degradation", "0.99",
                   "--no-fidelity", "--threads", "1", *_args(tiny_model, tmp_path, *extra), cwd=tmp_path, env=env,
                   timeout=120)


def test_binaries_loop_quantizes_with_llama_quantize_and_answers_with_llama_server(
    tiny_model: Path, tmp_path: Path, fake_tools_env: dict[str, str],
):
    out = tmp_path / "out"
    proc = _binaries_loop(tiny_model, tmp_path, fake_tools_env, "--keep-models", "all")
    assert proc.returncode == 0, proc.stdout + proc.stderr

    summary = _summary(out)
    assert summary["backend"] == "llama.cpp-binaries"
    assert summary["backend_info"]["quantize"] == str(FAKE_QUANTIZE)
    assert summary["backend_info"]["server"] == str(FAKE_SERVER)  # found next to the quantizer
    assert [it["quant_level"] for it in summary["iterations"]] == LEVELS
    for it in summary["iterations"]:
        assert it["status"] == "ok" and it["error"] is None, it
        path = Path(it["model_path"])
        assert it["size_gb"] == pytest.approx(path.stat().st_size / 1e9, rel=1e-6)

    # llama-quantize IN OUT.partial TYPE NTHREADS, always from the base, once per level
    calls = _read_jsonl(tmp_path / "quant.jsonl")
    assert [call["argv"][1:] for call in calls] == [
        [str(tiny_model), str(Path(it["model_path"])) + ".partial", QUANTIZE_TYPES[it["quant_level"]], "1"]
        for it in summary["iterations"]
    ]
    # one llama-server per model: the baseline serves the base file, each level its own file
    events = _read_jsonl(tmp_path / "server.jsonl")
    starts = [event for event in events if event["event"] == "start"]
    served = [event["argv"][event["argv"].index("-m") + 1] for event in starts]
    assert served == [str(tiny_model), *(it["model_path"] for it in summary["iterations"])]
    chats = [event for event in events if event["event"] == "request" and event.get("path") == "/v1/chat/completions"]
    assert len(chats) == 2 * 7
    assert all(chat["body"]["temperature"] == 0.0 and chat["body"]["max_tokens"] == 8 for chat in chats)
    for start in starts:
        assert process_gone(start["pid"], "llama-server"), "a llama-server outlived its level"
    _no_leftovers(out)


@pytest.mark.parametrize(("mode", "words"), [
    ("fail", ["exit status 1", "failed to quantize model from"]),
    ("crash", ["killed by signal 11"]),
])
def test_binaries_quantizer_failures_fail_each_level_and_the_loop_goes_on(
    tiny_model: Path, tmp_path: Path, fake_tools_env: dict[str, str], mode: str, words: list[str],
):
    out = tmp_path / "out"
    proc = _binaries_loop(tiny_model, tmp_path, {**fake_tools_env, "FAKE_QUANT_MODE": mode})
    # the baseline ran, no level could: "ran but no level met the targets"
    assert proc.returncode == EXIT_TARGETS_NOT_MET, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr

    summary = _summary(out)
    assert summary["backend"] == "llama.cpp-binaries"
    assert summary["baseline"]["overall_score"] is not None
    assert [it["quant_level"] for it in summary["iterations"]] == LEVELS
    for it in summary["iterations"]:
        assert it["status"] == "failed", it
        assert it["overall_score"] is None
        for word in words:
            assert word in it["error"], it["error"]
    assert summary["best_result"] is None and summary["targets_met"] is False
    assert len(_read_jsonl(tmp_path / "quant.jsonl")) == len(LEVELS)
    assert not list(out.glob("*.gguf")), sorted(p.name for p in out.iterdir())
    _no_leftovers(out)


def test_binaries_quantizer_timeout_kills_the_tool_and_the_loop_goes_on(
    tiny_model: Path, tmp_path: Path, fake_tools_env: dict[str, str],
):
    out = tmp_path / "out"
    started = time.monotonic()
    proc = _binaries_loop(tiny_model, tmp_path, {**fake_tools_env, "FAKE_QUANT_MODE": "sleep"},
                          "--quant-timeout", "2", "--max-iterations", "3")
    elapsed = time.monotonic() - started
    assert proc.returncode == EXIT_TARGETS_NOT_MET, proc.stdout + proc.stderr
    assert elapsed < 60

    summary = _summary(out)
    assert [it["quant_level"] for it in summary["iterations"]] == LEVELS[:3]
    for it in summary["iterations"]:
        assert it["status"] == "failed" and "timed out after 2 s" in it["error"], it
    calls = _read_jsonl(tmp_path / "quant.jsonl")
    assert len(calls) == 3
    for call in calls:
        assert process_gone(call["pid"], "llama-quantize"), "a timed-out llama-quantize is still running"
    # the last level's quantizer and the child it started (the pid file is rewritten per level)
    pids = [int(line) for line in (tmp_path / "quant.pids").read_text().split()]
    assert len(pids) == 2 and pids[0] == calls[-1]["pid"]
    assert process_gone(pids[1], "time.sleep"), "the quantizer's child outlived the timeout"
    assert not list(out.glob("*.gguf"))
    _no_leftovers(out)


def test_a_missing_quantize_path_is_one_line_naming_it(tiny_model: Path, tmp_path: Path):
    proc = run_cli("--loop", "--quant-tool", "/nonexistent/llama-quantize", *_args(tiny_model, tmp_path),
                   cwd=tmp_path, timeout=60)
    assert proc.returncode == EXIT_BACKEND, proc.stdout + proc.stderr
    line = _one_line_error(proc)
    assert "'/nonexistent/llama-quantize'" in line and "not found" in line


def test_a_quoted_quant_tool_command_is_split_and_run_without_a_shell(
    tiny_model: Path, tmp_path: Path, fake_tools_env: dict[str, str],
):
    # A script path with a space and shell syntax in it: a shell would split it or run the substitution.
    tools = tmp_path / "fake tools $(touch pwned)"
    tools.mkdir()
    script = tools / "llama-quantize"
    shutil.copyfile(FAKE_QUANTIZE, script)  # not executable: it runs only as python's argument
    command = f'"{sys.executable}" "{script}" --leave-output-tensor'
    out = tmp_path / "out"
    proc = run_cli("--run-once", "q8_0", "--quant-tool", command, "--no-fidelity", "--threads", "1",
                   *_args(tiny_model, tmp_path), cwd=tmp_path, env=fake_tools_env, timeout=120)
    assert proc.returncode in (0, EXIT_TARGETS_NOT_MET), proc.stdout + proc.stderr

    [call] = _read_jsonl(tmp_path / "quant.jsonl")
    [it] = _summary(out)["iterations"]
    assert it["status"] == "ok", it
    assert call["argv"] == [str(script), "--leave-output-tensor", str(tiny_model), it["model_path"] + ".partial",
                            "Q8_0", "1"]
    assert not (tmp_path / "pwned").exists() and not (tools / "pwned").exists()
    summary = _summary(out)
    assert summary["backend"] == "llama.cpp-binaries"
    assert summary["backend_info"]["quantize"] == sys.executable
    assert summary["backend_info"]["server"] == str(FAKE_SERVER)  # from PATH: python's directory has none
    _no_leftovers(out)


# ---------------------------------------------------------------------------------------------------------------
# --quant-tool auto


@needs_llama
def test_auto_picks_the_embedded_llama_cpp(tiny_model: Path, tmp_path: Path, fake_tools_env: dict[str, str]):
    # The fake llama-quantize is on PATH too: auto must still prefer llama-cpp-python.
    out = tmp_path / "out"
    proc = run_cli("--run-once", "q8_0", "--quant-tool", "auto", "--no-fidelity", "--keep-models", "all",
                   *_args(tiny_model, tmp_path), cwd=tmp_path, env=fake_tools_env, timeout=300)
    assert proc.returncode in (0, EXIT_TARGETS_NOT_MET), proc.stdout + proc.stderr

    summary = _summary(out)
    assert summary["backend"] == "llama.cpp"
    assert summary["backend_info"]["kind"] == "embedded"
    [it] = summary["iterations"]
    assert it["quant_level"] == "q8_0" and it["status"] == "ok", it
    with Path(it["model_path"]).open("rb") as handle:
        assert handle.read(4) == b"GGUF"
    assert not (tmp_path / "quant.jsonl").exists(), "auto ran the llama-quantize on PATH"
    assert not (tmp_path / "server.jsonl").exists(), "auto started the llama-server on PATH"
    _no_leftovers(out)
