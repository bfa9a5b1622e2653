"""scripts/nbtools.py: a stored progress bar keeps only its last state."""

import sys
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import nbtools  # noqa: E402


def stream(name: str, text: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_output("stream", name=name, text=text)


def test_a_redrawn_bar_keeps_its_last_state_and_stdout_is_untouched():
    outputs = [
        stream("stderr", "\rtrain:   0%| 0/4"),
        stream("stderr", "\rtrain:  50%| 2/4"),
        stream("stderr", "\rtrain: 100%| 4/4"),
        stream("stdout", "final loss 0.1\r\n"),
        stream("stderr", "\n"),
    ]
    squashed = nbtools.squash_progress(outputs)
    assert [o["name"] for o in squashed] == ["stderr", "stdout", "stderr"]
    assert squashed[0]["text"] == "train: 100%| 4/4"
    assert squashed[1]["text"] == "final loss 0.1\r\n"
    assert outputs[0]["text"] == "\rtrain:   0%| 0/4"  # the input is not modified


def test_stderr_without_carriage_returns_is_kept_whole():
    outputs = [stream("stderr", "warning: one\n"), stream("stderr", "warning: two\n")]
    assert nbtools.squash_progress(outputs)[0]["text"] == "warning: one\nwarning: two\n"
