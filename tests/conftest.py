"""Shared fixtures: the tiny real GGUF model and a helper that runs the CLI in a fresh process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tiny_gguf import build_tiny_gguf  # noqa: E402

CLI = ROOT / "pass1_quantization_loop.py"


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real two-layer llama GGUF (F16, n_embd 256) built with the gguf package."""
    return build_tiny_gguf(tmp_path_factory.mktemp("model") / "tiny-llama-f16.gguf")


def run_cli(*args: str | os.PathLike, cwd: Path, env: dict[str, str] | None = None,
            timeout: float = 600) -> subprocess.CompletedProcess:
    """Run pass1_quantization_loop.py in a new process (as a user would) and capture its output."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, str(CLI), *map(str, args)], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def process_gone(pid: int, needle: str | None = None, timeout: float = 5.0) -> bool:
    """True once ``pid`` no longer runs, waiting up to ``timeout`` seconds.

    A zombie waiting to be reaped counts as gone; with ``needle``, so does a process whose command line no longer
    holds it (the PID was recycled by something else).
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            proc = psutil.Process(pid)
            if proc.status() == psutil.STATUS_ZOMBIE or (needle and needle not in " ".join(proc.cmdline())):
                return True
        except psutil.NoSuchProcess:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
