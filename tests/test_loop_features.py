"""Issue-level features on the real path: size prediction, skips, cache, early termination, determinism, reports."""

from __future__ import annotations

import json
import sqlite3
import struct
import zlib
from pathlib import Path

import pytest
from conftest import run_cli

from backends import EmbeddedLlamaCpp, llama_cpp_available
from model_files import inspect_gguf
from quant_levels import FTYPE_MOSTLY_F16, LEVELS
from size_predictor import predict_size

needs_llama = pytest.mark.skipif(not llama_cpp_available(), reason="llama-cpp-python not installed")
TINY = ["--force", "--evaluation-prompts", "3", "--max-tokens", "8", "--ctx-size", "1024"]


def _summaries(out: Path) -> list[dict]:
    return sorted((json.loads(p.read_text()) for p in out.glob("pass1_summary_*.json")), key=lambda s: s["run_id"])


def _prediction_errors(base: Path, work: Path) -> dict[str, float]:
    backend = EmbeddedLlamaCpp(threads=2)
    info = inspect_gguf(base)
    errors = {}
    for level in LEVELS:
        dst = work / f"{level.name}.gguf"
        backend.quantize(base, dst, level.ftype)
        predicted = predict_size(info, level)
        assert predicted.method == "llama.cpp dry run"
        errors[level.name] = abs(predicted.size_bytes - dst.stat().st_size) / dst.stat().st_size
        dst.unlink()
    return errors


@needs_llama
def test_size_prediction_within_3_percent_on_the_test_model(tiny_model: Path, tmp_path: Path):
    errors = _prediction_errors(tiny_model, tmp_path)
    assert max(errors.values()) < 0.03, errors


@needs_llama
def test_size_prediction_within_3_percent_on_the_demo_model(tmp_path: Path):
    from model_files import demo_model_path

    try:
        demo = demo_model_path()
    except Exception as exc:  # noqa: BLE001 - the demo package is optional for this test
        pytest.skip(f"demo model not installed: {exc}")
    f16 = tmp_path / "demo-f16.gguf"
    EmbeddedLlamaCpp(threads=2).quantize(demo, f16, FTYPE_MOSTLY_F16, allow_requantize=True)
    errors = _prediction_errors(f16, tmp_path)
    assert max(errors.values()) < 0.03, errors


@needs_llama
def test_levels_predicted_over_the_target_are_skipped_not_quantized(tiny_model: Path, tmp_path: Path):
    # tiny-llama: q8_0 ~1.55 MB, q6_K ~1.20 MB, q5_K_M ~1.04 MB, q4_K_M ~0.89 MB
    proc = run_cli("--loop", *TINY, "--base-model", tiny_model, "--output-dir", tmp_path / "m", "--db",
                   tmp_path / "t.db", "--target-size", "0.001", "--strategy", "linear", "--max-degradation", "0.99",
                   "--keep-models", "all", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    [summary] = _summaries(tmp_path / "m")
    status = {it["quant_level"]: it for it in summary["iterations"]}
    for name in ("q8_0", "q6_K", "q5_K_M"):
        assert status[name]["status"] == "skipped"
        assert status[name]["predicted_size_gb"] > 0.001
        assert "not quantized" in status[name]["note"]
        assert not list((tmp_path / "m").glob(f"*_quantized_{name}_*.gguf"))
    for name in ("q4_K_M", "q3_K_L", "q2_K"):
        assert status[name]["status"] == "ok" and status[name]["size_gb"] <= 0.001
    assert summary["best_result"]["quant_level"] == "q2_K"


@needs_llama
def test_rerun_reuses_every_answer_and_skips_quantization(tiny_model: Path, tmp_path: Path):
    args = ["--loop", *TINY, "--base-model", tiny_model, "--output-dir", tmp_path / "m", "--db", tmp_path / "t.db",
            "--strategy", "linear", "--max-degradation", "0.99"]
    first = run_cli(*args, cwd=tmp_path)
    second = run_cli(*args, cwd=tmp_path)
    assert first.returncode == second.returncode == 0, second.stderr
    a, b = _summaries(tmp_path / "m")
    assert a["cache"]["responses_reused"] == 0
    assert b["cache"]["responses_reused"] == 7 * 3 and b["cache"]["responses_generated"] == 0
    assert sorted(b["cache"]["levels_reused"]) == sorted(["f16", *(level.name for level in LEVELS)])
    for x, y in zip(a["iterations"], b["iterations"], strict=True):
        assert x["overall_score"] == y["overall_score"] and x["size_gb"] == y["size_gb"]
        assert y["from_cache"] == 3 and y["timings"]["quantize_s"] < 0.5
    # --no-cache generates again
    third = run_cli(*args, "--no-cache", cwd=tmp_path)
    assert third.returncode == 0, third.stderr
    assert _summaries(tmp_path / "m")[-1]["cache"]["responses_reused"] == 0


def test_early_termination_stops_a_hopeless_level(tmp_path: Path):
    # Mock q2_K answers loop and lose their empathy: with a 1 % target it cannot pass long before the end.
    proc = run_cli("--run-once", "q2_K", "--mock", "--force", "--max-degradation", "0.01", "--output-dir",
                   tmp_path / "m", "--db", tmp_path / "t.db", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    [summary] = _summaries(tmp_path / "m")
    [it] = summary["iterations"]
    assert it["status"] == "early_stopped"
    assert 0 < it["scenarios_used"] < 25
    assert f"stopped after {it['scenarios_used']} of 25" in it["note"]
    assert it["meets_quality"] is False
    log_lines = Path(it["responses_file"]).read_text().splitlines()
    assert len(log_lines) == it["scenarios_used"]


@needs_llama
def test_same_model_and_settings_give_identical_scores(tiny_model: Path, tmp_path: Path):
    runs = []
    for name in ("a", "b"):
        proc = run_cli("--run-once", "q4_K_M", *TINY, "--base-model", tiny_model, "--output-dir", tmp_path / name,
                       "--db", tmp_path / name / "t.db", cwd=tmp_path)
        assert proc.returncode in (0, 1), proc.stderr
        [summary] = _summaries(tmp_path / name)
        runs.append(summary)
    assert runs[0]["baseline"]["metrics"] == runs[1]["baseline"]["metrics"]
    a, b = runs[0]["iterations"][0], runs[1]["iterations"][0]
    assert (a["metrics"], a["overall_score"], a["fidelity"]) == (b["metrics"], b["overall_score"], b["fidelity"])
    answers = [Path(r["iterations"][0]["responses_file"]).read_text() for r in runs]
    assert [json.loads(x)["response"] for x in answers[0].splitlines()] == \
        [json.loads(x)["response"] for x in answers[1].splitlines()]


@needs_llama
def test_kld_rises_as_bits_fall_and_is_in_the_table(tiny_model: Path, tmp_path: Path):
    proc = run_cli("--loop", *TINY, "--base-model", tiny_model, "--output-dir", tmp_path / "m", "--db",
                   tmp_path / "t.db", "--strategy", "linear", "--max-degradation", "0.99", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    [summary] = _summaries(tmp_path / "m")
    kld = {it["quant_level"]: it["fidelity"]["kld_mean"] for it in summary["iterations"]}
    assert 0 < kld["q8_0"] < kld["q4_K_M"] < kld["q2_K"]
    assert all(0 < it["fidelity"]["same_top_pct"] <= 100 for it in summary["iterations"])
    assert not list((tmp_path / "m").glob(".fidelity_*")), "the stored baseline log-probs are removed at the end"
    table = run_cli("--print-last-results", "--db", tmp_path / "t.db", cwd=tmp_path).stdout
    q2_row = next(line for line in table.splitlines() if line.split()[1:2] == ["q2_K"])
    assert f"{kld['q2_K']:.4f}" in q2_row
    # a KLD gate below q2_K's divergence makes it fail even at a 99 % degradation target
    gated = run_cli("--run-once", "q2_K", *TINY, "--base-model", tiny_model, "--output-dir", tmp_path / "g",
                    "--db", tmp_path / "g.db", "--max-degradation", "0.99", "--max-kld", f"{kld['q2_K'] / 2:.6f}",
                    cwd=tmp_path)
    assert gated.returncode == 1, gated.stderr
    [it] = _summaries(tmp_path / "g")[0]["iterations"]
    assert it["meets_quality"] is False and "--max-kld" in it["note"]


# -- reports: table, JSON, history, compare, chart, exit codes (mock: the data does not matter here) -------------

@pytest.fixture(scope="module")
def two_mock_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("reports")
    common = ["--mock", "--force", "--output-dir", str(work / "m"), "--db", str(work / "t.db")]
    assert run_cli("--loop", "--strategy", "linear", *common, cwd=work).returncode == 0
    assert run_cli("--loop", "--target-size", "1", *common, cwd=work).returncode == 1  # nothing fits 1 GB
    return work


def test_print_last_results_json_matches_the_table(two_mock_runs: Path):
    work = two_mock_runs
    data = json.loads(run_cli("--print-last-results", "--json", "--db", work / "t.db", cwd=work).stdout)
    assert data["mock"] is True and data["targets"]["target_size_gb"] == 1.0
    assert data["targets_met"] is False and data["best_result"] is None
    assert {it["status"] for it in data["iterations"]} == {"skipped"}
    assert all("predicted" in it["note"] for it in data["iterations"])
    assert data["answer"].startswith("[mock] No level met both targets")
    table = run_cli("--print-last-results", "--db", work / "t.db", cwd=work).stdout
    assert table.count("skipped") >= 6 and "[MOCK DATA]" in table


def test_history_and_compare(two_mock_runs: Path):
    work = two_mock_runs
    history = run_cli("--history", "5", "--db", work / "t.db", cwd=work)
    assert history.returncode == 0
    lines = history.stdout.strip().splitlines()
    assert len(lines) == 3 and "best" in lines[0]
    newest, older = lines[1].split(), lines[2].split()
    assert newest[-1] == "no" and older[-1] == "yes"
    runs = json.loads(run_cli("--history", "--json", "--db", work / "t.db", cwd=work).stdout)
    compare = run_cli("--compare", runs[1]["run_id"], runs[0]["run_id"], "--db", work / "t.db", cwd=work)
    assert compare.returncode == 0
    q8 = next(line for line in compare.stdout.splitlines() if line.startswith("q8_0"))
    assert "PASS" in q8 and "skipped" in q8
    bad = run_cli("--compare", "nope", runs[0]["run_id"], "--db", work / "t.db", cwd=work)
    assert bad.returncode == 2 and "no run with id 'nope'" in bad.stderr


def test_export_csv_and_json(two_mock_runs: Path):
    work = two_mock_runs
    assert run_cli("--export", "csv", work / "x.csv", "--db", work / "t.db", cwd=work).returncode == 0
    header, *rows = (work / "x.csv").read_text().splitlines()
    assert "empathy_score" in header and "quant_level" in header
    db_rows = sqlite3.connect(work / "t.db").execute("SELECT COUNT(*) FROM iterations").fetchone()[0]
    assert len(rows) == db_rows
    assert run_cli("--export", "json", work / "x.json", "--db", work / "t.db", cwd=work).returncode == 0
    assert len(json.loads((work / "x.json").read_text())) == db_rows


def _png_size_and_colours(path: Path) -> tuple[int, int, int]:
    """Width, height and the number of distinct pixel values of an 8-bit RGB/RGBA PNG (stdlib only)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    idat = b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IDAT":
            idat += body
        chunks.setdefault(kind, body)
        pos += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert depth == 8 and colour in (2, 6)
    raw = zlib.decompress(idat)
    channels = 3 if colour == 2 else 4
    stride = width * channels + 1
    # sample every 7th row's raw bytes (filters aside, a blank image has almost no distinct values)
    values = {raw[r * stride + 1:(r + 1) * stride] for r in range(0, height, 7)}
    return width, height, len(values)


def test_chart_is_written_and_not_blank(two_mock_runs: Path):
    work = two_mock_runs
    first = _summaries(work / "m")[0]
    chart = Path(first["chart"])
    assert chart.exists() and chart.suffix == ".png"
    width, height, distinct_rows = _png_size_and_colours(chart)
    assert (width, height) == (880, 550)
    assert distinct_rows > 20


def test_help_shows_groups_examples_and_exit_codes(tmp_path: Path):
    out = run_cli("--help", cwd=tmp_path).stdout
    for text in ("core parameters:", "execution modes:", "additional options:", "--run-once q4_K_M",
                 "--loop --mock --force", "1 GB = 1e9 bytes", "exit status: 0 targets met"):
        assert text in out
    version = run_cli("--version", cwd=tmp_path)
    assert version.returncode == 0 and "pass1_quantization_loop.py" in version.stdout


def _in_a_terminal(args: list[str], cwd: Path) -> str:
    """Run the CLI with a pseudo-terminal (120 columns) as stdout and stderr; return everything it drew."""
    import os
    import pty
    import shlex
    import sys

    from conftest import CLI

    drawn = bytearray()

    def read(fd: int) -> bytes:
        data = os.read(fd, 65536)
        drawn.extend(data)
        return data  # pty.spawn echoes it to fd 1, which pytest captures

    command = shlex.join([sys.executable, str(CLI), *args])
    old = os.getcwd()
    os.chdir(cwd)
    try:
        status = pty.spawn(["bash", "-c", f"stty cols 120 rows 40; exec {command}"], read)
    finally:
        os.chdir(old)
    assert os.waitstatus_to_exitcode(status) == 0, drawn.decode(errors="replace")
    return drawn.decode(errors="replace")


def test_progress_bars_for_the_ladder_and_the_answers_only_on_a_terminal(tmp_path: Path):
    args = ["--loop", "--mock", "--force", "--output-dir", "out", "--db", "t.db", "--evaluation-prompts", "5"]
    screen = _in_a_terminal(args, tmp_path)
    assert "ladder:" in screen and "level/s" in screen
    assert "answers f16:" in screen and "answers q4_K_M:" in screen and "answer/s" in screen
    assert "Use q4_K_M" in screen  # the lines the user reads are printed above the bars, not lost

    quiet = _in_a_terminal([*args, "--quiet"], tmp_path)
    assert "ladder:" not in quiet and "answers" not in quiet
    piped = run_cli(*args, cwd=tmp_path)
    assert piped.returncode == 0 and "ladder:" not in piped.stderr + piped.stdout
