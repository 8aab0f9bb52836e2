"""The Ollama backend: answers come from an Ollama server, models are imported with the ``ollama`` CLI.

Ollama can only make q8_0 and q4_K_M itself (``ollama create --quantize``), so every other level is made as a GGUF
file by another backend (embedded llama.cpp or ``llama-quantize``) and imported with ``FROM /abs/path.gguf``.
``OllamaClient`` is a thin typed client for the few HTTP endpoints used (shapes as in Ollama's docs/api.md);
``OllamaBackend`` implements the ``Backend`` protocol of backends.py on top of it.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol, TypedDict
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ConnectTimeoutError

from backends import Generation, GenerationSettings, LevelFailure, ModelHandle, ProgressFn
from errors import BackendError
from model_files import safe_name
from quant_levels import LEVELS, Level

log = logging.getLogger(__name__)

DEFAULT_HOST = "http://127.0.0.1:11434"
DEFAULT_PORT = 11434
INSTALL_URL = "https://ollama.com/download"
# Ollama refuses model names longer than this (types/model/name.go).
MAX_MODEL_NAME = 80
_LOOPBACK = {"127.0.0.1", "localhost", "::1", "0.0.0.0", "::"}
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


# ---------------------------------------------------------------------------------------------------------------
# Request and response shapes (docs/api.md).  Responses are total=False: servers add fields over time.


class ChatMessage(TypedDict):
    """One chat message: role is system, user, assistant or tool."""

    role: str
    content: str


class Options(TypedDict, total=False):
    """The Modelfile parameters this project sets per request."""

    temperature: float
    seed: int
    num_predict: int
    num_ctx: int
    repeat_penalty: float


class ChatRequest(TypedDict, total=False):
    """POST /api/chat body."""

    model: str
    messages: list[ChatMessage]
    stream: bool
    options: Options
    keep_alive: str | int


class ChatResponse(TypedDict, total=False):
    """POST /api/chat reply with ``stream: false``."""

    model: str
    created_at: str
    message: ChatMessage
    done: bool
    done_reason: str
    total_duration: int
    load_duration: int
    prompt_eval_count: int
    prompt_eval_duration: int
    eval_count: int
    eval_duration: int


class ModelDetails(TypedDict, total=False):
    """The ``details`` object of /api/tags, /api/show and /api/ps entries."""

    parent_model: str
    format: str
    family: str
    families: list[str] | None
    parameter_size: str
    quantization_level: str


class ModelEntry(TypedDict, total=False):
    """One model of GET /api/tags or GET /api/ps (ps adds ``expires_at`` and ``size_vram``)."""

    name: str
    model: str
    modified_at: str
    size: int
    digest: str
    details: ModelDetails
    expires_at: str
    size_vram: int


class TagsResponse(TypedDict):
    """GET /api/tags: the models available locally."""

    models: list[ModelEntry]


class PsResponse(TypedDict):
    """GET /api/ps: the models loaded in memory."""

    models: list[ModelEntry]


class ShowResponse(TypedDict, total=False):
    """POST /api/show: a model's Modelfile, parameters, template, details and GGUF metadata."""

    modelfile: str
    parameters: str
    template: str
    details: ModelDetails
    model_info: dict[str, Any]
    size: int  # not in docs/api.md; used when a server sends it


class VersionResponse(TypedDict):
    """GET /api/version."""

    version: str


class OllamaError(Exception):
    """An Ollama request failed: ``status_code`` is the HTTP status, None when no answer came (server down)."""

    def __init__(self, error: str, status_code: int | None = None) -> None:
        super().__init__(error)
        self.error = error
        self.status_code = status_code

    def __str__(self) -> str:
        return self.error if self.status_code is None else f"{self.error} (status code: {self.status_code})"


# ---------------------------------------------------------------------------------------------------------------
# HTTP client.


def parse_host(value: str | None) -> str:
    """The base URL for an ``OLLAMA_HOST`` value, read the way Ollama reads it.

    ``host``, ``host:port``, ``:port`` and full URLs are accepted; without a scheme the port defaults to 11434,
    with ``http://``/``https://`` to 80/443 (as in Ollama's envconfig).
    """
    text = (value or "").strip().rstrip("/")
    if not text:
        return DEFAULT_HOST
    scheme, sep, hostport = text.partition("://")
    default_port = DEFAULT_PORT
    if not sep:
        scheme, hostport = "http", text
    elif scheme == "http":
        default_port = 80
    elif scheme == "https":
        default_port = 443
    parts = urlsplit(f"{scheme}://{hostport}")
    host = parts.hostname or "127.0.0.1"
    try:
        port = parts.port or default_port
    except ValueError:
        raise OllamaError(f"OLLAMA_HOST={value!r} has an invalid port") from None
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}{parts.path.rstrip('/')}"


class OllamaClient:
    """One method per Ollama endpoint used here; every failure is an ``OllamaError``."""

    def __init__(self, host: str | None = None, *, connect_timeout: float = 3.0, read_timeout: float = 600.0,
                 pool_size: int = 10) -> None:
        self.host = parse_host(host if host is not None else os.environ.get("OLLAMA_HOST"))
        # Short connect timeout and no retries: a server that is not running must be reported in seconds.
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.session = requests.Session()
        adapter = HTTPAdapter(max_retries=0, pool_connections=1, pool_maxsize=max(1, pool_size))
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        if urlsplit(self.host).hostname in _LOOPBACK:
            # A corporate HTTP_PROXY must not swallow requests meant for the local server.
            self.session.trust_env = False

    def close(self) -> None:
        """Close pooled connections."""
        self.session.close()

    def version(self) -> VersionResponse:
        """GET /api/version: the server's version; also the cheapest "is it running" probe."""
        return self._request("GET", "/api/version", read_timeout=10)

    def tags(self) -> TagsResponse:
        """GET /api/tags: the models available locally."""
        return self._request("GET", "/api/tags", read_timeout=30)

    def show(self, name: str) -> ShowResponse:
        """POST /api/show: details of one model (404 if it does not exist)."""
        return self._request("POST", "/api/show", {"model": name}, read_timeout=60)

    def chat(self, model: str, messages: Sequence[ChatMessage], options: Options | None = None,
             keep_alive: str | int | None = None) -> ChatResponse:
        """POST /api/chat without streaming: the model's whole reply in one response."""
        body: ChatRequest = {"model": model, "messages": list(messages), "stream": False}
        if options is not None:
            body["options"] = options
        if keep_alive is not None:
            body["keep_alive"] = keep_alive
        return self._request("POST", "/api/chat", body)

    def unload(self, model: str) -> ChatResponse:
        """Unload a model from memory: /api/chat with no messages and ``keep_alive`` 0 (docs: "Unload a model")."""
        return self._request("POST", "/api/chat", {"model": model, "messages": [], "keep_alive": 0},
                             read_timeout=120)

    def delete(self, name: str) -> None:
        """DELETE /api/delete: remove a model and its data (404 if it does not exist)."""
        self._request("DELETE", "/api/delete", {"model": name}, read_timeout=60)

    def ps(self) -> PsResponse:
        """GET /api/ps: the models loaded in memory."""
        return self._request("GET", "/api/ps", read_timeout=30)

    def _request(self, method: str, path: str, body: Any = None, *, read_timeout: float | None = None) -> Any:
        url = self.host + path
        timeout = (self.connect_timeout, read_timeout or self.read_timeout)
        try:
            response = self.session.request(method, url, json=body, timeout=timeout)
        except requests.ConnectionError as exc:
            if _never_connected(exc):
                raise OllamaError(f"cannot reach the Ollama server at {self.host}: start it with `ollama serve` "
                                  "(or set OLLAMA_HOST to where it runs)") from None
            raise OllamaError(f"{method} {path}: the Ollama server at {self.host} dropped the connection "
                              f"({_one_line(exc)})") from None
        except requests.Timeout:
            raise OllamaError(f"{method} {path} got no answer within {timeout[1]:g} s from {self.host}") from None
        except requests.RequestException as exc:
            raise OllamaError(f"{method} {path} at {self.host} failed: {_one_line(exc)}") from None
        if response.status_code >= 400:
            raise OllamaError(_error_text(response), response.status_code)
        if not response.content:
            return {}
        try:
            return response.json()
        except ValueError:
            raise OllamaError(f"{method} {path} returned invalid JSON: {response.text[:200]!r}",
                              response.status_code) from None


def _never_connected(exc: requests.ConnectionError) -> bool:
    """True when no connection was made (refused, unresolvable, connect timeout), not when one broke later."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    reason = getattr(exc.args[0] if exc.args else None, "reason", None)
    return isinstance(reason, ConnectTimeoutError)  # urllib3's NewConnectionError subclasses it


def _one_line(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:300]


def _error_text(response: requests.Response) -> str:
    """Ollama's ``{"error": "..."}`` message, else the start of the body."""
    with contextlib.suppress(ValueError):
        data = response.json()
        if isinstance(data, dict) and data.get("error"):
            return str(data["error"])
    return response.text.strip()[:300] or response.reason or "error"


# ---------------------------------------------------------------------------------------------------------------
# Backend.


class FileQuantizer(Protocol):
    """What the Ollama backend needs from the backend that makes the GGUF files Ollama cannot."""

    def quantize(self, src: Path, dst: Path, ftype: int, *, allow_requantize: bool = False,
                 progress: ProgressFn | None = None) -> None:
        """Write ``dst`` as ``src`` quantized to ``ftype``; LevelFailure on failure."""


def ollama_model_name(model_prefix: str, label: str) -> str:
    """The Ollama name for a level: ``{prefix}-pass1-{label}`` in Ollama's model-name characters.

    Only lower-case letters, digits, '-', '_' and '.' survive (no '/', ':' or '..'), so a label can neither pick
    a namespace or tag nor name a path.  Ollama caps names at 80 characters: an over-long prefix or label is cut
    and given a short hash of the whole, so different models and levels keep different names.
    """
    prefix = _fit(_name_part(model_prefix), _PREFIX_CHARS)
    suffix = _fit(_name_part(f"pass1-{label}"), MAX_MODEL_NAME - len(prefix) - 1)
    return f"{prefix}-{suffix}"


_PREFIX_CHARS = 40


def _name_part(text: str) -> str:
    # Runs of separators ("-.._" from "../") collapse to their first, so no ".." survives.
    return re.sub(r"([._-])[._-]+", r"\1", safe_name(text).lower()).strip("._-") or "model"


def _fit(part: str, limit: int) -> str:
    if len(part) <= limit:
        return part
    digest = hashlib.sha256(part.encode()).hexdigest()[:6]
    return f"{part[: limit - 7].rstrip('._-')}-{digest}"


NATIVE_QUANTIZE_SINCE = (0, 7)  # `ollama create --quantize q8_0|q4_K_S|q4_K_M` from a 16-bit model


def _version_at_least(version: str | None, minimum: tuple[int, ...]) -> bool:
    """True when ``version`` ("0.12.6", "v0.7.0-rc1") is at least ``minimum``; unknown or dev builds count as new."""
    numbers = re.findall(r"\d+", version or "")[: len(minimum)]
    if len(numbers) < len(minimum) or tuple(map(int, numbers)) == (0,) * len(minimum):
        return True
    return tuple(map(int, numbers)) >= minimum


def require_ollama_cli(ollama_exe: str = "ollama") -> str:
    """The path of the ``ollama`` executable, or a BackendError saying how to get it."""
    exe = shutil.which(ollama_exe)
    if exe is None:
        raise BackendError(f"the Ollama CLI was not found (looked for {ollama_exe!r} on PATH): install Ollama "
                           f"from {INSTALL_URL}, or put the ollama executable on PATH")
    return exe


class OllamaBackend:
    """Generate with an Ollama server; import each level's GGUF (or let Ollama quantize q8_0/q4_K_M) via the CLI."""

    name = "ollama"

    def __init__(
        self,
        file_quantizer: FileQuantizer | None,
        *,
        client: OllamaClient | None = None,
        ollama_exe: str = "ollama",
        parallel: int = 2,
        keep_alive: str | int = "5m",
        model_prefix: str,
        use_native_quantize: bool = False,
        create_timeout: float = 3600.0,
    ) -> None:
        self.ollama_exe = require_ollama_cli(ollama_exe)
        self.file_quantizer = file_quantizer
        self.parallel = max(1, parallel)
        self.keep_alive = keep_alive
        self.model_prefix = model_prefix
        self.create_timeout = create_timeout
        try:
            self.client = client or OllamaClient(pool_size=max(10, self.parallel))
            self.server_version = self.client.version().get("version")
        except OllamaError as exc:  # bad OLLAMA_HOST or no server: the whole backend is unusable
            raise BackendError(str(exc)) from None
        native = use_native_quantize and _version_at_least(self.server_version, NATIVE_QUANTIZE_SINCE)
        if use_native_quantize and not native:
            log.info("Ollama %s predates `ollama create --quantize` (%s): llama.cpp makes every level",
                     self.server_version, ".".join(map(str, NATIVE_QUANTIZE_SINCE)))
        self.native_levels: frozenset[str] = (
            frozenset(level.name for level in LEVELS if level.ollama_native) if native else frozenset()
        )

    def describe(self) -> dict:
        """Backend name, Ollama server host and version, and what makes the non-native levels."""
        info: dict[str, Any] = {"name": self.name, "kind": "ollama", "host": self.client.host,
                                "version": self.server_version, "native_levels": sorted(self.native_levels)}
        describe = getattr(self.file_quantizer, "describe", None)
        if callable(describe):
            info["file_quantizer"] = describe()
        return info

    def quantize(self, src: Path, dst: Path, ftype: int, *, allow_requantize: bool = False,
                 progress: ProgressFn | None = None) -> None:
        """Make the level's GGUF with the file quantizer; Ollama imports it in ``load``."""
        if self.file_quantizer is None:
            raise LevelFailure(f"Ollama cannot make llama.cpp ftype {ftype} itself and no file quantizer is set "
                               "(install llama-cpp-python or put llama-quantize on PATH)")
        self.file_quantizer.quantize(src, dst, ftype, allow_requantize=allow_requantize, progress=progress)

    def load(self, path: Path | None, label: str, *, level: Level | None = None) -> ModelHandle:
        """``ollama create`` a model from ``path`` (with ``--quantize`` for native levels); its size from the server."""
        if path is None:
            raise LevelFailure("the Ollama backend needs a GGUF file to import")
        source = Path(path).resolve()
        if not source.is_file():
            raise LevelFailure(f"cannot import {source} into Ollama: no such file")
        if "\n" in str(source) or "\r" in str(source):
            raise LevelFailure(f"cannot import {source!r} into Ollama: a Modelfile path cannot hold a line break")
        name = ollama_model_name(self.model_prefix, label)
        native = level is not None and level.name in self.native_levels
        with tempfile.TemporaryDirectory(prefix="pass1-ollama-") as tmp:
            modelfile = Path(tmp) / "Modelfile"
            modelfile.write_text(f"FROM {source}\n", encoding="utf-8")
            cmd = [self.ollama_exe, "create", name, "-f", str(modelfile)]
            if native:
                assert level is not None
                cmd += ["--quantize", level.name]
            self._run_cli(cmd, what=f"ollama create {name}")
        try:
            size, details = self._size(name)
        except LevelFailure:
            self._delete_quietly(name)  # no half-imported model left behind
            raise
        extra = {"ollama_quantized": native, "quantization_level": details.get("quantization_level")}
        return ModelHandle(path=source if not native else None, name=name, size_bytes=size, extra=extra)

    def generate(self, model: ModelHandle, prompts: Sequence[tuple[str, str]], settings: GenerationSettings,
                 on_result: Callable[[Generation], bool] | None = None) -> list[Generation]:
        """Answer with up to ``parallel`` /api/chat requests at once; results and callbacks in input order.

        ``on_result`` returning False cancels the requests not yet started; those already running finish and
        are dropped.  A failed request gives a Generation with ``error`` and no response.
        """
        if not prompts:
            return []
        options: Options = {"temperature": settings.temperature, "seed": settings.seed,
                            "num_predict": settings.max_tokens, "num_ctx": settings.n_ctx,
                            "repeat_penalty": settings.repeat_penalty}
        stop = threading.Event()
        pool = ThreadPoolExecutor(max_workers=min(self.parallel, len(prompts)), thread_name_prefix="ollama-chat")
        results: list[Generation] = []
        try:
            futures: list[Future[Generation]] = [
                pool.submit(self._answer, model.name, scenario_id, prompt, settings, options, stop)
                for scenario_id, prompt in prompts
            ]
            for future in futures:
                result = future.result()
                results.append(result)
                if on_result is not None and on_result(result) is False:
                    break
        except BaseException:
            # Ctrl-C: do not wait for requests in flight.
            stop.set()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
        return results

    def release(self, model: ModelHandle, *, delete: bool) -> None:
        """Unload the model (keep_alive 0); when ``delete``, remove it from Ollama.  Failures are only logged."""
        try:
            self.client.unload(model.name)
        except OllamaError as exc:
            log.warning("could not unload %s from Ollama: %s", model.name, exc)
        if delete:
            try:
                self.client.delete(model.name)
            except OllamaError as exc:
                if exc.status_code != 404:  # already gone is what we wanted
                    log.warning("could not delete %s from Ollama (remove it with `ollama rm %s`): %s",
                                model.name, model.name, exc)

    # -- helpers ---------------------------------------------------------------------------------------------

    def _answer(self, model: str, scenario_id: str, prompt: str, settings: GenerationSettings, options: Options,
                stop: threading.Event) -> Generation:
        if stop.is_set():
            return Generation(scenario_id, None, "cancelled")
        started = time.perf_counter()
        messages: list[ChatMessage] = [ChatMessage(role=m["role"], content=m["content"])
                                       for m in settings.messages(prompt)]
        try:
            reply = self.client.chat(model, messages, options=options, keep_alive=self.keep_alive)
        except OllamaError as exc:
            return Generation(scenario_id, None, f"Ollama: {exc}", time.perf_counter() - started)
        elapsed = time.perf_counter() - started
        message = reply.get("message") if isinstance(reply, dict) else None
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, str):
            return Generation(scenario_id, None, "Ollama reply had no message content", elapsed)
        return Generation(scenario_id, content, None, elapsed, int(reply.get("eval_count") or 0),
                          reply.get("done_reason"))

    def _run_cli(self, cmd: list[str], *, what: str) -> None:
        # The CLI must talk to the same server as the HTTP client, whatever OLLAMA_HOST says.
        env = {**os.environ, "OLLAMA_HOST": self.client.host}
        log.debug("running %s", cmd)
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, errors="replace", env=env,
                                  stdin=subprocess.DEVNULL, timeout=self.create_timeout)
        except subprocess.TimeoutExpired:
            raise LevelFailure(f"{what} timed out after {self.create_timeout:g} s") from None
        except OSError as exc:
            raise LevelFailure(f"cannot run {cmd[0]}: {exc.strerror or exc}") from None
        if done.returncode != 0:
            raise LevelFailure(f"{what} failed (exit status {done.returncode}): "
                               f"{_output_tail(done.stderr or done.stdout)}")

    def _size(self, name: str) -> tuple[int, ModelDetails]:
        """The model's size in bytes: /api/show's ``size`` if the server sends one, else its /api/tags entry."""
        try:
            shown = self.client.show(name)
            details = shown.get("details") or {}
            if isinstance(shown.get("size"), int):
                return shown["size"], details
            for entry in self.client.tags().get("models", []):
                if name in (entry.get("name"), entry.get("model")) or entry.get("name") == f"{name}:latest":
                    if not isinstance(entry.get("size"), int) or entry["size"] <= 0:
                        raise LevelFailure(f"Ollama lists {name} without a size")
                    return entry["size"], entry.get("details") or details
        except OllamaError as exc:
            raise LevelFailure(f"Ollama created {name} but could not describe it: {exc}") from None
        raise LevelFailure(f"Ollama created {name} but /api/tags does not list it")

    def _delete_quietly(self, name: str) -> None:
        with contextlib.suppress(OllamaError):
            self.client.delete(name)


def _output_tail(text: str) -> str:
    """The last lines of CLI output without terminal escapes or spinner frames (one line)."""
    lines = [_ANSI.sub("", line).strip() for line in re.split(r"[\r\n]+", text or "")]
    joined = " | ".join(line for line in lines if line)
    return joined[-600:] if joined else "(no output)"
