"""Faults, with real processes: kill -9 at several moments and resume, corrupt files, locks, read-only and full disks.

Every test checks what the user is left with: the exit status, one line on stderr (never a traceback), and a
tracker database, JSON backup and summary that agree, with nothing recorded before the fault lost or duplicated.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
from conftest import CLI, run_cli

import pass1_quantization_loop as loop_cli

needs_llama = pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None,
                                 reason="llama-cpp-python not installed")
LEVELS = ["q8_0", "q6_K", "q5_K_M", "q4_K_M", "q3_K_L", "q2_K"]
BACKUP = "emotion_training_backup.json"


def _loop_args(model: Path, work: Path, prompts: int = 8, max_tokens: int = 32) -> list[str]:
    return ["--loop", "--force", "--base-model", str(model), "--output-dir", str(work / "out"),
            "--db", str(work / "t.db"), "--evaluation-prompts", str(prompts), "--max-tokens", str(max_tokens),
            "--strategy", "linear", "--max-degradation", "0.99", "--keep-models", "all", "--ctx-size", "512"]


def _mock_args(work: Path, *extra: str) -> list[str]:
    return ["--loop", "--mock", "--force", "--output-dir", str(work / "out"), "--db", str(work / "t.db"),
            "--evaluation-prompts", "5", *extra]


def _rows(db: Path, sql: str, *params: object) -> list[tuple]:
    """Read the tracker the way a second process would (read-only, while the loop may be writing)."""
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error:
        return []
    try:
        return conn.execute(sql, params).fetchall()
    except sqlite3.Error:
        return []
    finally:
        conn.close()


def _iterations(db: Path) -> list[tuple]:
    return _rows(db, "SELECT id, run_id, iteration, quant_level, status, overall_score FROM iterations ORDER BY id")


def _one_line_error(proc: subprocess.CompletedProcess) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert "Traceback" not in proc.stderr, proc.stderr
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: "), lines[0]
    return lines[0]


def _wait_until(proc: subprocess.Popen, condition: Callable[[], bool], what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if proc.poll() is not None:
            pytest.fail(f"the loop finished (exit {proc.returncode}) before {what}")
        time.sleep(0.005)
    pytest.fail(f"timed out waiting for {what}")


@contextlib.contextmanager
def _loop_process(args: list[str], cwd: Path) -> Iterator[subprocess.Popen]:
    log = (cwd / "loop.log").open("a")
    proc = subprocess.Popen([sys.executable, str(CLI), *args], cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
        log.close()


# ---------------------------------------------------------------------------------------------------------------
# kill -9 and resume


@needs_llama
def test_sigkill_at_four_moments_then_the_same_command_completes_the_run(tiny_model: Path, tmp_path: Path):
    out, db = tmp_path / "out", tmp_path / "t.db"
    args = _loop_args(tiny_model, tmp_path, prompts=10, max_tokens=48)  # wide enough windows on a busy machine
    quantizer_pids: list[int] = []

    def quantizer_running() -> bool:
        for marker in out.glob("*.quantizer.json"):
            with contextlib.suppress(OSError, ValueError, KeyError):
                quantizer_pids.append(int(json.loads(marker.read_text())["pid"]))
                return True
        return False

    moments: list[tuple[str, Callable[[], bool]]] = [
        ("while the baseline answers (run row written, no iteration yet)",
         lambda: bool(_rows(db, "SELECT 1 FROM runs")) and not _iterations(db)),
        ("while a level is being quantized", quantizer_running),
        ("after the third model is recorded", lambda: len(_iterations(db)) >= 3),
        ("after the fifth model is recorded (q3_K_L, q2_K to go)", lambda: len(_iterations(db)) >= 5),
    ]
    recorded_before_kills: list[tuple] = []
    for what, condition in moments:
        with _loop_process(args, tmp_path) as proc:
            _wait_until(proc, condition, what)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            assert proc.returncode == -signal.SIGKILL
        recorded_before_kills = _iterations(db)
        assert len(recorded_before_kills) == len({row[3] for row in recorded_before_kills}), recorded_before_kills

    # The quantizer child of the killed loop does not run on as an orphan.
    assert quantizer_pids
    deadline = time.monotonic() + 10
    while any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
              for pid in quantizer_pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
                   for pid in quantizer_pids)

    final = run_cli(*args, cwd=tmp_path)
    assert final.returncode == 0, final.stderr
    assert "Traceback" not in final.stderr
    assert "resuming run" in final.stdout

    runs = _rows(db, "SELECT run_id, status FROM runs")
    assert len(runs) == 1 and runs[0][1] == "finished", runs
    rows = _iterations(db)
    assert [row[3] for row in rows] == ["f16", *LEVELS], "each model recorded once, none lost or duplicated"
    assert all(row[4] == "ok" for row in rows), rows
    # nothing recorded before the kills was lost or rewritten
    assert set(recorded_before_kills) <= set(rows)
    responses = _rows(db, "SELECT iteration_id, scenario_id FROM responses")
    assert len(responses) == 7 * 10 and len(set(responses)) == len(responses)

    backup = json.loads((tmp_path / BACKUP).read_text())
    assert sorted((b["id"], b["quant_level"], b["overall_score"]) for b in backup["iterations"]) == sorted(
        (row[0], row[3], row[5]) for row in rows)
    assert len(backup["responses"]) == len(responses)
    [summary_path] = out.glob("pass1_summary_*.json")
    summary = json.loads(summary_path.read_text())
    assert summary["resumed"] is True
    assert [it["quant_level"] for it in summary["iterations"]] == LEVELS
    by_level = {row[3]: row[5] for row in rows}
    for it in summary["iterations"]:
        assert it["overall_score"] == pytest.approx(by_level[it["quant_level"]])
    assert not list(out.glob("*.partial")) and not list(out.glob("*.quantizer.json"))
    assert not (out / loop_cli.LOCK_NAME).exists()


@needs_llama
def test_a_quantizer_orphaned_by_a_killed_run_is_stopped_and_its_partial_removed(tiny_model: Path, tmp_path: Path):
    """An external quantizer (own process group) outlives kill -9 of the loop; the next run stops it first."""
    out = tmp_path / "out"
    out.mkdir()
    dst = out / "tiny-llama_quantized_q8_0_iter1.gguf"
    partial = dst.with_name(dst.name + ".partial")
    partial.write_bytes(b"GGUF half written")
    orphan = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
    marker = dst.with_name(dst.name + ".quantizer.json")
    marker.write_text(json.dumps({"pid": orphan.pid, "started": psutil.Process(orphan.pid).create_time()}))
    # A marker whose PID now belongs to another process (start time differs) must not get that process killed.
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
    other = out / "tiny-llama_quantized_q6_K_iter2.gguf.quantizer.json"
    other.write_text(json.dumps({"pid": bystander.pid, "started": 12345.0}))
    try:
        proc = run_cli("--run-once", "q4_K_M", "--force", "--base-model", tiny_model, "--output-dir", out,
                       "--db", tmp_path / "t.db", "--evaluation-prompts", "2", "--max-tokens", "8", cwd=tmp_path)
        assert proc.returncode in (0, 1), proc.stderr
        assert f"stopped quantizer PID {orphan.pid}" in proc.stdout
        assert orphan.wait(timeout=10) == -signal.SIGKILL
        assert bystander.poll() is None
        assert not partial.exists() and not marker.exists() and not other.exists()
    finally:
        for child in (orphan, bystander):
            child.kill()
            child.wait()


# ---------------------------------------------------------------------------------------------------------------
# corrupt files


def test_a_corrupt_database_is_moved_aside_and_rebuilt_through_the_cli(tmp_path: Path):
    first = run_cli(*_mock_args(tmp_path), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    db = tmp_path / "t.db"
    before = _iterations(db)
    assert len(before) == 7  # baseline + six levels (measured or inferred by bisect)
    db.write_bytes(b"this is not a database" * 100)
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)

    second = run_cli(*_mock_args(tmp_path, "--no-cache"), cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "rebuilt" in second.stdout and "corrupt" in second.stdout
    assert len(list(tmp_path.glob("t.db.corrupt-*"))) == 1
    after = _iterations(db)
    assert set(before) <= set(after) and len(after) == 2 * len(before)
    assert len(_rows(db, "SELECT run_id FROM runs")) == 2
    assert _rows(db, "PRAGMA integrity_check") == [("ok",)]
    shown = run_cli("--print-last-results", "--json", "--db", db, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr


def test_a_corrupt_backup_beside_a_healthy_database_is_rewritten(tmp_path: Path):
    assert run_cli(*_mock_args(tmp_path), cwd=tmp_path).returncode == 0
    (tmp_path / BACKUP).write_text('{"format": "emotion_training_backup", "iterations": [')
    proc = run_cli(*_mock_args(tmp_path), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    backup = json.loads((tmp_path / BACKUP).read_text())
    assert sorted(b["id"] for b in backup["iterations"]) == [row[0] for row in _iterations(tmp_path / "t.db")]
    assert len(backup["runs"]) == 2


# ---------------------------------------------------------------------------------------------------------------
# locks


def test_a_second_loop_refuses_at_once_naming_the_first_pid_and_reading_still_works(tmp_path: Path):
    assert run_cli(*_mock_args(tmp_path), cwd=tmp_path).returncode == 0
    before = _iterations(tmp_path / "t.db")
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        (tmp_path / "out" / loop_cli.LOCK_NAME).write_text(f"{holder.pid}\n")
        started = time.monotonic()
        refused = run_cli(*_mock_args(tmp_path), cwd=tmp_path)
        assert time.monotonic() - started < 20
        assert refused.returncode == 2
        assert f"PID {holder.pid}" in _one_line_error(refused)
        shown = run_cli("--print-last-results", "--db", tmp_path / "t.db", cwd=tmp_path)
        assert shown.returncode == 0 and "q4_K_M" in shown.stdout, shown.stderr
    finally:
        holder.kill()
        holder.wait()
    assert _iterations(tmp_path / "t.db") == before
    # The holder is dead now: its lock is stale and the next loop takes it over.
    again = run_cli(*_mock_args(tmp_path), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert not (tmp_path / "out" / loop_cli.LOCK_NAME).exists()


# ---------------------------------------------------------------------------------------------------------------
# read-only and full disks


@contextlib.contextmanager
def _tmpfs(path: Path, size: str, *, read_only: bool = False) -> Iterator[Path]:
    """A real small filesystem (root only); skips when mounting is not allowed here."""
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _read_only_dir(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        path = tmp_path / "readonly"
        path.mkdir()
        path.chmod(0o555)
        yield path
        path.chmod(0o755)
    else:
        with _tmpfs(tmp_path / "readonly", "1m", read_only=True) as path:
            yield path


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    yield from _read_only_dir(tmp_path)


def test_a_read_only_output_dir_is_one_line_and_the_tracker_is_untouched(tmp_path: Path, read_only_dir: Path):
    assert run_cli(*_mock_args(tmp_path), cwd=tmp_path).returncode == 0
    before = _iterations(tmp_path / "t.db")
    backup_before = (tmp_path / BACKUP).read_bytes()
    proc = run_cli("--loop", "--mock", "--force", "--output-dir", read_only_dir, "--db", tmp_path / "t.db",
                   cwd=tmp_path)
    assert proc.returncode == 2
    assert "--output-dir" in _one_line_error(proc)
    assert _iterations(tmp_path / "t.db") == before
    assert (tmp_path / BACKUP).read_bytes() == backup_before


def test_a_tracker_in_a_read_only_dir_is_one_line(tmp_path: Path, read_only_dir: Path):
    proc = run_cli("--loop", "--mock", "--force", "--output-dir", tmp_path / "out", "--db",
                   read_only_dir / "sub" / "t.db", cwd=tmp_path)
    assert proc.returncode == 2
    assert "tracker" in _one_line_error(proc)


@needs_llama
def test_too_little_free_space_fails_each_level_cleanly_and_the_loop_goes_on(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    """The free-space check (monkeypatched to report 20 MB free) fails every level before quantizing."""
    real = loop_cli.shutil.disk_usage
    monkeypatch.setattr(loop_cli.shutil, "disk_usage", lambda path: real(path)._replace(free=20_000_000))
    code = loop_cli.main([*_loop_args(tiny_model, tmp_path, prompts=3), "--quiet"])
    captured = capsys.readouterr()
    assert code == loop_cli.EXIT_TARGETS_NOT_MET, captured.err
    assert "Traceback" not in captured.err
    rows = _iterations(tmp_path / "t.db")
    assert [row[4] for row in rows] == ["ok"] + ["failed"] * 6  # the baseline needs no new file
    errors = [row[0] for row in _rows(tmp_path / "t.db", "SELECT error FROM iterations WHERE status = 'failed'")]
    assert all("not enough disk space" in error for error in errors), errors
    assert not list((tmp_path / "out").glob("*.gguf*"))
    assert _rows(tmp_path / "t.db", "PRAGMA integrity_check") == [("ok",)]


@needs_llama
def test_a_really_full_disk_fails_the_level_removes_the_partial_and_keeps_the_tracker(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    """A 1.3 MB tmpfs as output dir: q8_0 (1.55 MB) cannot be written.  The free-space pre-check is switched off,
    as if another program filled the disk after it ran."""
    monkeypatch.setattr(loop_cli.Orchestrator, "_check_disk", lambda self, level, path: None)
    with _tmpfs(tmp_path / "small", "1300k") as small:
        args = _loop_args(tiny_model, tmp_path, prompts=3)
        args[args.index("--output-dir") + 1] = str(small)
        code = loop_cli.main([*args, "--max-iterations", "1", "--quiet"])
        captured = capsys.readouterr()
        leftovers = sorted(path.name for path in small.iterdir())
    assert "Traceback" not in captured.err
    rows = _iterations(tmp_path / "t.db")
    assert rows[0][4] == "ok" and rows[1][3] == "q8_0" and rows[1][4] == "failed", rows
    [error] = [row[0] for row in _rows(tmp_path / "t.db", "SELECT error FROM iterations WHERE quant_level = 'q8_0'")]
    assert error.startswith("disk full (") and "quantizer failed" in error, error
    assert not [name for name in leftovers if name.endswith((".partial", ".gguf", ".quantizer.json"))], leftovers
    assert code in (loop_cli.EXIT_TARGETS_NOT_MET, loop_cli.EXIT_USAGE), captured.err
    assert _rows(tmp_path / "t.db", "PRAGMA integrity_check") == [("ok",)]


def test_a_disk_that_fills_before_the_summary_is_written_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    """ENOSPC while writing the summary: one line, exit 2, the run stays open; the same command then finishes it."""
    real_write = loop_cli.atomic_write_text

    def full_for_summaries(path: Path, text: str) -> None:
        if Path(path).name.startswith("pass1_summary_"):
            raise OSError(28, "No space left on device", str(path))
        real_write(path, text)

    monkeypatch.setattr(loop_cli, "atomic_write_text", full_for_summaries)
    code = loop_cli.main(_mock_args(tmp_path, "--quiet"))
    err = capsys.readouterr().err
    assert code == loop_cli.EXIT_USAGE
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: No space left on device (") and "resume" in lines[0]
    db = tmp_path / "t.db"
    recorded = _iterations(db)
    assert len(recorded) == 7
    assert _rows(db, "SELECT status FROM runs") == [("running",)]
    assert not list((tmp_path / "out").glob("pass1_summary_*.json"))

    monkeypatch.setattr(loop_cli, "atomic_write_text", real_write)
    assert loop_cli.main(_mock_args(tmp_path, "--quiet")) == loop_cli.EXIT_OK
    assert _rows(db, "SELECT status FROM runs") == [("finished",)]
    assert _iterations(db) == recorded
    [summary] = (tmp_path / "out").glob("pass1_summary_*.json")
    assert json.loads(summary.read_text())["resumed"] is True


@needs_llama
def test_the_embedded_quantizer_exits_when_the_loop_that_started_it_is_killed(tmp_path: Path):
    """The quantizer child watches its parent: killed with -9, the loop leaves no quantizer running on."""
    blocked = tmp_path / "blocked.gguf"
    os.mkfifo(blocked)  # llama.cpp blocks opening it: the quantizer is "busy" for as long as the test likes
    starter = (
        "import os, subprocess, sys, time\n"
        f"child = subprocess.Popen([sys.executable, {str(loop_cli.Path(loop_cli.__file__).with_name('backends.py'))!r},"
        f" 'quantize', {str(blocked)!r}, {str(tmp_path / 'out.gguf.partial')!r}, '7', '1', '0'],"
        " env={**os.environ, 'PASS1_PARENT_PID': str(os.getpid())}, start_new_session=True)\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", starter], stdout=subprocess.PIPE, text=True)
    child = psutil.Process(int(parent.stdout.readline()))
    try:
        time.sleep(1.5)  # llama_cpp imported, llama_model_quantize waiting on the FIFO
        assert child.is_running() and child.status() != psutil.STATUS_ZOMBIE
        parent.kill()
        parent.wait()
        child.wait(timeout=5)  # raises psutil.TimeoutExpired if it runs on
        assert not child.is_running()
    finally:
        with contextlib.suppress(psutil.Error):
            child.kill()
        parent.stdout.close()
