"""Tests for benchmarks/common.py and the command line that every benchmark shares."""

import importlib.util
import os
import sys
from pathlib import Path

import pytest
import torch

from attention_book import reproducibility

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import common  # noqa: E402

SCRIPTS = sorted(p for p in BENCHMARKS.glob("*.py") if p.name != "common.py")


def load_script(path: Path):
    """Import a benchmark script as a module (its main() does not run)."""
    spec = importlib.util.spec_from_file_location(f"benchmark_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def keep_threads():
    """Restore PyTorch's thread count after a test that changes it."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_threads_default_to_the_books_policy(monkeypatch):
    monkeypatch.delenv(reproducibility.THREADS_ENV, raising=False)
    args = common.parser("A benchmark.").parse_args([])
    assert args.threads == reproducibility.DEFAULT_THREADS == 1
    assert args.load == 0
    monkeypatch.setenv(reproducibility.THREADS_ENV, "2")
    assert common.parser("A benchmark.").parse_args([]).threads == 2


def test_threads_and_load_are_parsed():
    args = common.parser("A benchmark.").parse_args(["--threads", "2", "--load", "1"])
    assert (args.threads, args.load) == (2, 1)
    several = common.parser("A benchmark.", several_threads=True)
    assert several.parse_args([]).threads == [reproducibility.default_threads()]
    assert several.parse_args(["--threads", "1", "2"]).threads == [1, 2]


@pytest.mark.parametrize("argv", [["--threads", "0"], ["--threads", "two"], ["--load", "-1"]])
def test_bad_counts_are_refused(argv, capsys):
    with pytest.raises(SystemExit):
        common.parser("A benchmark.").parse_args(argv)
    assert argv[1] in capsys.readouterr().err  # the message names the bad value


def test_cpu_load_runs_busy_processes_only_inside_the_block():
    with common.cpu_load(2) as busy:
        assert len(busy) == 2
        assert all(p.poll() is None for p in busy)  # still running
    assert all(p.poll() is not None for p in busy)  # killed and reaped
    with common.cpu_load(0) as busy:
        assert busy == []
    with pytest.raises(ValueError, match="processes"):
        with common.cpu_load(-1):
            pass


def test_load_average_is_a_rounded_non_negative_number():
    load = common.load_average()
    assert load >= 0 and round(load, 2) == load


def test_conditions_set_and_record_threads_and_load(keep_threads):
    with common.conditions(2, load=1) as record:
        assert torch.get_num_threads() == 2
        assert record["threads"] == 2 and record["competing_processes"] == 1
        assert record["default_threads"] == reproducibility.default_threads()
        assert "load_average_1min" not in record  # read when the block ends
    before, after = record["load_average_1min"]
    assert before >= 0 and after >= 0


def test_conditions_refuse_a_changed_thread_count(keep_threads):
    with pytest.raises(RuntimeError, match="asked for 2 threads but ran with 1"):
        with common.conditions(2):
            torch.set_num_threads(1)
    with pytest.raises(ValueError, match="threads"):
        with common.conditions(0):
            pass


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.stem)
def test_every_benchmark_takes_threads_and_load(path, monkeypatch):
    monkeypatch.delenv(reproducibility.THREADS_ENV, raising=False)
    parser = load_script(path).build_parser()
    default, chosen = parser.parse_args([]), parser.parse_args(["--threads", "2", "--load", "1"])
    several = isinstance(default.threads, list)  # notebook_times compares counts in one run
    assert default.threads == ([1] if several else 1)
    assert chosen.threads == ([2] if several else 2)
    assert (default.load, chosen.load) == (0, 1)


def test_a_busy_process_ends_when_its_parent_dies():
    import subprocess
    import time

    code = (
        f"import sys; sys.path.insert(0, {str(BENCHMARKS)!r}); import common, os\n"
        "with common.cpu_load(1) as busy:\n"
        "    print(busy[0].pid, flush=True)\n"
        "    os._exit(0)  # dies without leaving the block, as when killed\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    pid = int(out.stdout.split()[0])
    for _ in range(100):  # the orphan notices its new parent within moments
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(pid, 9)
    raise AssertionError(f"busy process {pid} outlived its parent")
