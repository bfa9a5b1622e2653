"""Execute notebooks in a fresh kernel and clean them, the way the book commits them."""

from __future__ import annotations

import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

KERNEL = "python3"
TIMEOUT_S = 600
KEEP_NOTEBOOK_METADATA = ("kernelspec", "language_info")
KEEP_CELL_METADATA = ("tags", "mystnb")  # mystnb: a figure's alt text


def squash_progress(outputs: list) -> list:
    """Merge consecutive stderr streams and keep only the last state of each progress bar.

    A tqdm bar redraws itself with carriage returns; stored as is, one bar becomes hundreds of
    lines that Colab and Jupyter show. Each line keeps only the text after its last ``\\r``.
    """
    merged: list = []
    for out in outputs:
        if out.get("output_type") == "stream" and out.get("name") == "stderr":
            if merged and merged[-1].get("name") == "stderr":
                merged[-1]["text"] += out["text"]
                continue
            out = nbformat.from_dict(dict(out))
        merged.append(out)
    for out in merged:
        if out.get("name") == "stderr" and "\r" in out["text"]:
            lines = out["text"].split("\n")
            out["text"] = "\n".join(line.rsplit("\r", 1)[-1] for line in lines)
    return merged


def clean(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Drop execution timings and editor state; keep tags, kernelspec and language name."""
    nb.metadata = {k: v for k, v in nb.metadata.items() if k in KEEP_NOTEBOOK_METADATA}
    if "language_info" in nb.metadata:
        info = nb.metadata["language_info"]
        nb.metadata["language_info"] = {"name": info.get("name", "python")}
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": KERNEL}
    for cell in nb.cells:
        cell.metadata = {k: v for k, v in cell.metadata.items() if k in KEEP_CELL_METADATA}
        if cell.cell_type == "code":
            cell.outputs = squash_progress(cell.outputs)
        cell.pop("id", None)
    nb.nbformat, nb.nbformat_minor = 4, 4
    return nb


def execute(path: Path, write: bool = True) -> float:
    """Run ``path`` top to bottom in a fresh kernel (cwd: its folder); return the seconds taken.

    Raises the kernel's error, naming the cell, if a cell fails.
    """
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=TIMEOUT_S,
        kernel_name=KERNEL,
        resources={"metadata": {"path": str(path.parent)}},
    )
    start = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - start
    if write:
        nbformat.write(clean(nb), path)
    return seconds
