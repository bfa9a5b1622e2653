"""scripts/torch_index.py: `make install` asks for PyTorch's CPU index only where pip would
otherwise install the CUDA build."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import torch_index  # noqa: E402


def _report(version: str, requires: list[str]) -> dict:
    return {
        "install": [{"metadata": {"name": "torch", "version": version, "requires_dist": requires}}]
    }


CUDA = _report("2.13.0", ["filelock", 'nvidia-cublas-cu12==12.8.4.1; platform_system == "Linux"'])
CPU_LOCAL = _report("2.13.0+cpu", ["filelock", "sympy>=1.13.3"])
CPU_PYPI = _report("2.13.0", ["filelock", "sympy>=1.13.3"])  # macOS, Windows


def test_the_cpu_index_only_when_pip_would_fetch_cuda():
    assert torch_index.cpu_index_args(CUDA) == ["--index-url", torch_index.CPU_INDEX]
    assert torch_index.cpu_index_args(CPU_LOCAL) == []
    assert torch_index.cpu_index_args(CPU_PYPI) == []
    assert torch_index.cpu_index_args(None) == []  # pip could not say: leave pip alone
    assert torch_index.cpu_index_args({"install": []}) == []


def test_the_torch_line_of_a_requirements_file():
    text = "# pinned\ntorchvision==0.1\ntorch==2.13.0  # the CPU wheel\nnumpy==2.4.6\n"
    assert torch_index.torch_requirement(text) == "torch==2.13.0"
    assert torch_index.torch_requirement(
        (Path(__file__).parents[1] / "requirements.txt").read_text()
    ).startswith("torch==")
    with pytest.raises(ValueError, match="no torch"):
        torch_index.torch_requirement("numpy==2.4.6\n")


def test_main_prints_the_arguments_then_the_requirement(tmp_path, monkeypatch, capsys):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("torch==2.13.0\n")
    for report, expected in (
        (CUDA, f"--index-url {torch_index.CPU_INDEX} torch==2.13.0"),
        (CPU_LOCAL, "torch==2.13.0"),
    ):
        monkeypatch.setattr(torch_index, "pip_report", lambda requirement, r=report: r)
        assert torch_index.main(["torch_index.py", str(requirements)]) == 0
        assert capsys.readouterr().out.strip() == expected
