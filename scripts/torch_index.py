"""Print what `pip install` needs to install the CPU build of PyTorch (`make install`).

On Linux x86_64, the torch wheel on PyPI depends on CUDA libraries (several GB of nvidia-*
packages) that a book written for a CPU never uses; PyTorch's own CPU index has the same version
without them. So `make install` installs torch first, alone, with the arguments this script
prints: the torch line of requirements.txt (``torch==2.13.0``), preceded by

- ``--index-url https://download.pytorch.org/whl/cpu`` when pip, left to itself, would pick a torch
  wheel that requires nvidia-* packages;
- nothing when pip would pick a CPU build anyway: on macOS and Windows (PyPI's wheels there are
  the CPU build), when pip is already pointed at a CPU index or a local ``+cpu`` wheel (as CI and
  some machines are, through PIP_INDEX_URL, PIP_EXTRA_INDEX_URL, PIP_FIND_LINKS or pip.conf), or
  when pip cannot tell (no network: the install then says why).

pip is asked with ``pip install --dry-run --no-deps --report``, which reads the wheel's metadata
and downloads no wheel where the index serves metadata apart (PyPI does).

Usage: ``python scripts/torch_index.py [requirements.txt]``
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def torch_requirement(requirements: str) -> str:
    """The torch line of a requirements file (``torch==2.13.0``)."""
    for line in requirements.splitlines():
        line = line.split("#", 1)[0].strip()
        if re.match(r"torch\s*(==|>=|<=|~=|$)", line):
            return line
    raise ValueError("no torch requirement in the requirements file")


def would_fetch_cuda(report: dict) -> bool:
    """Whether pip's installation report picks a torch wheel that pulls CUDA packages."""
    for item in report.get("install", []):
        metadata = item.get("metadata", {})
        if metadata.get("name", "").lower() != "torch":
            continue
        if "+cpu" in metadata.get("version", ""):
            return False
        requires = metadata.get("requires_dist") or []
        return any(re.match(r"nvidia[-_]", r.lower()) for r in requires)
    return False


def cpu_index_args(report: dict | None) -> list[str]:
    """The pip arguments for the CPU build: the CPU index only when pip would fetch CUDA."""
    if report is not None and would_fetch_cuda(report):
        return ["--index-url", CPU_INDEX]
    return []


def pip_report(requirement: str) -> dict | None:
    """What pip would install for ``requirement`` alone, or None when pip cannot say."""
    command = [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--no-deps"]
    command += ["--ignore-installed", "--report", "-", requirement]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    try:
        return json.loads(done.stdout)
    except json.JSONDecodeError:
        return None


def main(argv: list[str]) -> int:
    requirement = torch_requirement(
        Path(argv[1] if len(argv) > 1 else "requirements.txt").read_text()
    )
    print(" ".join([*cpu_index_args(pip_report(requirement)), requirement]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
