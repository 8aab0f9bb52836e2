"""The Ollama backend against a real loopback HTTP server (tests/fake_ollama_server.py) and a fake ``ollama`` CLI.

Nothing is patched: the backend's requests go over TCP to the fake server, ``ollama create`` runs the fake
executable put first on PATH, and the assertions read what the server received and holds.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import time
from pathlib import Path

import pytest
from fake_ollama_server import FakeOllama, install_fake_cli

from backends import Generation, GenerationSettings, LevelFailure, ProgressFn
from errors import BackendError
from ollama_backend import (
    NATIVE_QUANTIZE_SINCE,
    OllamaBackend,
    OllamaClient,
    OllamaError,
    _version_at_least,
    ollama_model_name,
    parse_host,
)
from quant_levels import get_level

PREFIX = "tiny-llama"
OLLAMA_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


class CopyQuantizer:
    """Stands in for llama.cpp at the process boundary: "quantizes" by copying the file."""

    def __init__(self) -> None:
        self.calls: list[tuple[Path, Path, int]] = []

    def quantize(self, src: Path, dst: Path, ftype: int, *, allow_requantize: bool = False,
                 progress: ProgressFn | None = None) -> None:
        self.calls.append((src, dst, ftype))
        shutil.copyfile(src, dst)

    def describe(self) -> dict:
        return {"name": "copy"}


@pytest.fixture
def fake() -> FakeOllama:
    with FakeOllama() as server:
        yield server


@pytest.fixture
def ollama_env(fake: FakeOllama, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeOllama:
    """The fake CLI first on PATH and OLLAMA_HOST (as ``host:port``, no scheme) pointing at the fake server."""
    install_fake_cli(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("OLLAMA_HOST", fake.address)
    return fake


@pytest.fixture
def base_gguf(tmp_path: Path) -> Path:
    """A stand-in 16-bit base file (the fake server only reads its size)."""
    path = tmp_path / "models" / "tiny-llama-f16.gguf"
    path.parent.mkdir()
    path.write_bytes(b"GGUF" + bytes(64_000))
    return path


def make_backend(**kwargs) -> OllamaBackend:
    return OllamaBackend(CopyQuantizer(), model_prefix=PREFIX, **kwargs)


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------------------------------------------------------
# load: `ollama create` with a Modelfile


def test_load_imports_the_gguf_with_ollama_create(ollama_env: FakeOllama, base_gguf: Path, tmp_path: Path):
    backend = make_backend()
    level_file = tmp_path / "models" / "tiny-llama_quantized_q6_K_iter1.gguf"
    backend.quantize(base_gguf, level_file, get_level("q6_K").ftype)

    handle = backend.load(level_file, "q6_K", level=get_level("q6_K"))

    assert handle.name == "tiny-llama-pass1-q6_k"
    model = ollama_env.model(handle.name)
    assert model is not None
    assert model.modelfile == f"FROM {level_file.resolve()}\n"
    assert Path(model.source).is_absolute()
    assert model.argv[:2] == ["create", handle.name]
    assert model.argv[2] == "-f" and "--quantize" not in model.argv
    # docs/api.md's /api/show has no size, so the size comes from the /api/tags entry
    assert handle.size_bytes == level_file.stat().st_size
    assert ollama_env.requests_to("POST", "/api/show")[-1].body == {"model": handle.name}
    assert ollama_env.requests_to("GET", "/api/tags")
    assert handle.path == level_file.resolve()


def test_size_comes_from_api_show_when_the_server_sends_it(ollama_env: FakeOllama, base_gguf: Path):
    ollama_env.show_size = True
    backend = make_backend()
    handle = backend.load(base_gguf, "f16")
    assert handle.size_bytes == base_gguf.stat().st_size
    assert not ollama_env.requests_to("GET", "/api/tags")


@pytest.mark.parametrize("label", ["../evil q4", "../../etc/passwd", "a/b:c", "Q4_K_M", "..", "x" * 200])
def test_model_names_stay_inside_ollamas_name_rules(ollama_env: FakeOllama, base_gguf: Path, label: str):
    backend = make_backend()
    handle = backend.load(base_gguf, label)
    assert OLLAMA_NAME.match(handle.name), handle.name
    assert ".." not in handle.name and "/" not in handle.name and ":" not in handle.name
    assert len(handle.name) <= 80
    assert handle.name.startswith(f"{PREFIX}-pass1")
    assert ollama_env.model(handle.name) is not None


def test_a_long_prefix_is_cut_before_the_level_label():
    name = ollama_model_name("Some-Very-Long-Model-Name-" * 6, "q5_K_M")
    assert len(name) <= 80
    assert name.endswith("-pass1-q5_k_m")
    assert ollama_model_name("m", "q4_K_M") != ollama_model_name("m", "q4_K_S")


def test_native_levels_are_quantized_by_ollama(ollama_env: FakeOllama, base_gguf: Path):
    backend = make_backend(use_native_quantize=True)
    assert backend.native_levels == {"q8_0", "q4_K_M"}

    handle = backend.load(base_gguf, "q8_0", level=get_level("q8_0"))

    model = ollama_env.model(handle.name)
    assert model is not None
    assert model.argv[-2:] == ["--quantize", "q8_0"]
    assert model.modelfile == f"FROM {base_gguf.resolve()}\n"
    assert handle.size_bytes == model.size < base_gguf.stat().st_size
    assert handle.path is None  # the level exists only inside Ollama


def test_an_ollama_older_than_0_7_gets_every_level_as_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    with FakeOllama(version="0.6.8") as old:
        install_fake_cli(tmp_path / "bin")
        monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}")
        monkeypatch.setenv("OLLAMA_HOST", old.address)
        assert make_backend(use_native_quantize=True).native_levels == frozenset()


@pytest.mark.parametrize(("version", "expected"), [
    ("0.12.6", True), ("0.7.0", True), ("v0.7.1-rc2", True), ("1.0", True), ("0.6.8", False), ("0.1.32", False),
    (None, True), ("", True), ("0.0.0", True),  # unknown or a dev build: assume a current Ollama
])
def test_native_quantize_needs_ollama_0_7(version: str | None, expected: bool):
    assert _version_at_least(version, NATIVE_QUANTIZE_SINCE) is expected


def test_without_native_quantize_every_level_is_imported_as_a_file(ollama_env: FakeOllama, base_gguf: Path):
    backend = make_backend()
    assert backend.native_levels == frozenset()
    handle = backend.load(base_gguf, "q8_0", level=get_level("q8_0"))
    model = ollama_env.model(handle.name)
    assert model is not None and "--quantize" not in model.argv


def test_a_failed_create_fails_only_that_level(ollama_env: FakeOllama, base_gguf: Path):
    ollama_env.fail_create["q2_k"] = "unsupported model architecture"
    backend = make_backend()
    with pytest.raises(LevelFailure, match="unsupported model architecture") as info:
        backend.load(base_gguf, "q2_K", level=get_level("q2_K"))
    assert "exit status 1" in str(info.value)
    assert OllamaClient().tags()["models"] == []


def test_quantize_delegates_to_the_file_quantizer(ollama_env: FakeOllama, base_gguf: Path, tmp_path: Path):
    quantizer = CopyQuantizer()
    backend = OllamaBackend(quantizer, model_prefix=PREFIX)
    dst = tmp_path / "out.gguf"
    backend.quantize(base_gguf, dst, get_level("q3_K_L").ftype)
    assert quantizer.calls == [(base_gguf, dst, 13)]
    assert dst.read_bytes() == base_gguf.read_bytes()
    assert backend.describe()["file_quantizer"] == {"name": "copy"}


# ---------------------------------------------------------------------------------------------------------------
# generate: /api/chat


def test_generate_sends_the_documented_chat_fields(ollama_env: FakeOllama, base_gguf: Path):
    backend = make_backend(keep_alive="5m")
    handle = backend.load(base_gguf, "q6_K")
    settings = GenerationSettings(max_tokens=40, temperature=0.0, seed=7, n_ctx=512)

    [result] = backend.generate(handle, [("grief-1", "My dog died this morning.")], settings)

    [request] = ollama_env.requests_to("POST", "/api/chat")
    assert request.body == {
        "model": handle.name,
        "messages": settings.messages("My dog died this morning."),
        "stream": False,
        "options": {"temperature": 0.0, "seed": 7, "num_predict": 40, "num_ctx": 512, "repeat_penalty": 1.1},
        "keep_alive": "5m",
    }
    assert result.scenario_id == "grief-1"
    assert result.error is None
    assert handle.name in result.response and "My dog died this morning." in result.response
    assert result.completion_tokens == len(result.response.split())
    assert result.finish_reason == "stop"
    assert result.generate_s > 0


def test_results_come_back_in_input_order_with_parallel_requests(ollama_env: FakeOllama, base_gguf: Path):
    backend = make_backend(parallel=3)
    handle = backend.load(base_gguf, "q5_K_M")
    prompts = [(f"s{i}", f"prompt number {i}") for i in range(7)]
    # The first prompts answer slowest, so completions arrive out of order.
    ollama_env.chat_delays.update({"prompt number 0": 0.4, "prompt number 1": 0.25, "prompt number 2": 0.1})
    seen: list[str] = []

    def on_result(gen: Generation) -> bool:
        seen.append(gen.scenario_id)
        return True

    results = backend.generate(handle, prompts, GenerationSettings(), on_result)

    assert [r.scenario_id for r in results] == [sid for sid, _ in prompts]
    assert seen == [sid for sid, _ in prompts]
    for (_, prompt), result in zip(prompts, results, strict=True):
        assert prompt in result.response
    assert ollama_env.max_active_chats == 3


def test_an_http_500_is_an_error_never_an_invented_reply(ollama_env: FakeOllama, base_gguf: Path):
    ollama_env.fail_prompts["BREAK"] = 500
    backend = make_backend()
    handle = backend.load(base_gguf, "q3_K_L")
    results = backend.generate(handle, [("a", "fine"), ("b", "please BREAK"), ("c", "also fine")],
                               GenerationSettings())
    assert [r.scenario_id for r in results] == ["a", "b", "c"]
    assert results[1].response is None
    assert "500" in results[1].error and "injected failure" in results[1].error
    assert results[0].error is None and results[2].error is None


def test_a_missing_model_is_an_error_per_answer(ollama_env: FakeOllama, base_gguf: Path):
    backend = make_backend()
    handle = backend.load(base_gguf, "q4_K_M")
    OllamaClient().delete(handle.name)
    [result] = backend.generate(handle, [("a", "hello")], GenerationSettings())
    assert result.response is None and "404" in result.error


def test_on_result_false_stops_the_remaining_requests(ollama_env: FakeOllama, base_gguf: Path):
    backend = make_backend(parallel=1)
    handle = backend.load(base_gguf, "q2_K")
    prompts = [(f"s{i}", f"prompt {i}") for i in range(6)]
    results = backend.generate(handle, prompts, GenerationSettings(), lambda gen: gen.scenario_id != "s1")
    assert [r.scenario_id for r in results] == ["s0", "s1"]
    # at most the one request already running when the stop came is sent beyond those two
    assert len(ollama_env.requests_to("POST", "/api/chat")) <= 3


# ---------------------------------------------------------------------------------------------------------------
# release


def test_release_unloads_and_deletes_the_model(ollama_env: FakeOllama, base_gguf: Path):
    backend = make_backend()
    handle = backend.load(base_gguf, "q4_K_M")
    backend.generate(handle, [("a", "I got the job!")], GenerationSettings())
    client = OllamaClient()
    assert [m["name"] for m in client.ps()["models"]] == [f"{handle.name}:latest"]

    backend.release(handle, delete=True)

    assert ollama_env.requests_to("POST", "/api/chat")[-1].body == {
        "model": handle.name, "messages": [], "keep_alive": 0}
    assert ollama_env.requests_to("DELETE", "/api/delete")[-1].body == {"model": handle.name}
    assert client.ps()["models"] == []
    assert client.tags()["models"] == []


def test_release_without_delete_keeps_the_model_but_unloads_it(ollama_env: FakeOllama, base_gguf: Path):
    backend = make_backend()
    handle = backend.load(base_gguf, "q6_K")
    backend.generate(handle, [("a", "hello")], GenerationSettings())
    backend.release(handle, delete=False)
    client = OllamaClient()
    assert client.ps()["models"] == []
    assert [m["name"] for m in client.tags()["models"]] == [f"{handle.name}:latest"]
    assert not ollama_env.requests_to("DELETE", "/api/delete")


# ---------------------------------------------------------------------------------------------------------------
# setup errors


def test_a_dead_server_is_one_line_naming_the_host_within_seconds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    address = f"127.0.0.1:{unused_port()}"
    started = time.monotonic()
    with pytest.raises(OllamaError) as info:
        OllamaClient(address).version()
    assert time.monotonic() - started < 10
    message = str(info.value)
    assert "\n" not in message
    assert f"http://{address}" in message and "ollama serve" in message
    assert info.value.status_code is None

    install_fake_cli(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("OLLAMA_HOST", address)
    started = time.monotonic()
    with pytest.raises(BackendError) as backend_info:
        make_backend()
    assert time.monotonic() - started < 10
    assert "\n" not in str(backend_info.value) and "ollama serve" in str(backend_info.value)
    assert backend_info.value.exit_code == 3


def test_a_missing_ollama_executable_is_a_backend_error(fake: FakeOllama, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setenv("OLLAMA_HOST", fake.address)
    with pytest.raises(BackendError) as info:
        make_backend()
    message = str(info.value)
    assert "'ollama'" in message and "https://ollama.com/download" in message and "\n" not in message
    with pytest.raises(BackendError, match="/nowhere/ollama"):
        make_backend(ollama_exe="/nowhere/ollama")


def test_errors_carry_the_status_code(fake: FakeOllama):
    with pytest.raises(OllamaError) as info:
        OllamaClient(fake.host).show("no-such-model")
    assert info.value.status_code == 404
    assert "not found" in str(info.value)


def test_describe_names_the_server(ollama_env: FakeOllama):
    info = make_backend().describe()
    assert info["name"] == "ollama" and info["kind"] == "ollama"
    assert info["host"] == ollama_env.host
    assert info["version"] == "0.12.6"


@pytest.mark.parametrize(("value", "url"), [
    (None, "http://127.0.0.1:11434"),
    ("", "http://127.0.0.1:11434"),
    ("127.0.0.1:1234", "http://127.0.0.1:1234"),
    ("example.com", "http://example.com:11434"),
    (":8080", "http://127.0.0.1:8080"),
    ("http://example.com", "http://example.com:80"),
    ("https://example.com/", "https://example.com:443"),
    ("[::1]:11434", "http://[::1]:11434"),
    ("http://gpu-box:11434/ollama", "http://gpu-box:11434/ollama"),
])
def test_ollama_host_is_read_the_way_ollama_reads_it(value: str | None, url: str):
    assert parse_host(value) == url
