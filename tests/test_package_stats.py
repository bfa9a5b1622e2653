"""Tests for scripts/package_stats.py: every line of a module is counted once, in one kind."""

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "package_stats.py"
spec = importlib.util.spec_from_file_location("package_stats", SCRIPT)
package_stats = importlib.util.module_from_spec(spec)
spec.loader.exec_module(package_stats)

SOURCE = '''"""A module."""

from attention_book import validation


def double(x: int) -> int:
    """Twice x."""
    validation.check_int("x", x)
    if x < 0:
        raise ValueError("x must be at least 0")
    # the logic
    return 2 * x
'''


def test_classify_sorts_every_line_into_one_kind(tmp_path):
    path = tmp_path / "example.py"
    path.write_text(SOURCE)
    stats = package_stats.classify(path)
    assert stats == {"lines": 12, "blank_or_comment": 4, "docs": 2, "checks": 3, "logic": 3}
    assert sum(v for k, v in stats.items() if k != "lines") == stats["lines"]


def test_the_package_total_is_the_sum_of_its_modules(capsys):
    assert package_stats.main(["--json"]) == 0
    out = capsys.readouterr().out
    assert '"logic_share"' in out and '"transformer"' in out
