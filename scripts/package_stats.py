"""Sizes of the package's modules, and the share of their lines that is model logic.

Every line of ``src/attention_book/*.py`` falls in one of four kinds:

* blank, or a comment;
* documentation: a module, class or function docstring;
* checks: the body of ``validation.py``, every ``raise`` and the ``if`` that guards it, every
  call of a ``validation.check_*`` helper whose result is not used, and every function named
  ``check_*`` or ``_check*``;
* logic: every other line, the code that computes something.

"Model logic" is the logic lines of all modules over all their lines, blank lines and docstrings
included, the way a reader meets them. Run ``python scripts/package_stats.py`` for a Markdown
table; ``--json`` prints one JSON line instead.
"""

from __future__ import annotations

import ast
import io
import json
import sys
import tokenize
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "attention_book"


def _docstring_lines(tree: ast.Module) -> set[int]:
    lines: set[int] = set()
    nodes = [tree, *(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef | ast.FunctionDef))]
    for node in nodes:
        body = node.body
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            if isinstance(body[0].value.value, str):
                lines.update(range(body[0].lineno, body[0].end_lineno + 1))
    return lines


def _is_check_call(node: ast.AST) -> bool:
    call = node.value if isinstance(node, ast.Expr) else None
    if not isinstance(call, ast.Call):
        return False
    f = call.func
    name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
    return name.startswith(("check_", "_check"))


def _check_lines(tree: ast.Module) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        span = range(getattr(node, "lineno", 0), getattr(node, "end_lineno", -1) + 1)
        if isinstance(node, ast.FunctionDef) and node.name.startswith(("check_", "_check")):
            lines.update(span)
        elif isinstance(node, ast.Raise) or _is_check_call(node):
            lines.update(span)
        elif isinstance(node, ast.If) and all(isinstance(s, ast.Raise) for s in node.body):
            lines.update(range(node.lineno, node.body[-1].end_lineno + 1))
    return lines


def classify(path: Path) -> dict[str, int]:
    """Count the blank/comment, documentation, check and logic lines of one module."""
    source = path.read_text()
    tree = ast.parse(source)
    total = len(source.splitlines())
    code = set()  # lines that hold a token other than a comment or a newline
    skip = (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT)
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type not in skip and tok.type != tokenize.ENDMARKER:
            code.update(range(tok.start[0], tok.end[0] + 1))
    docs = _docstring_lines(tree) & code
    checks = (code - docs) if path.name == "validation.py" else (_check_lines(tree) & code) - docs
    logic = code - docs - checks
    return {
        "lines": total,
        "blank_or_comment": total - len(code),
        "docs": len(docs),
        "checks": len(checks),
        "logic": len(logic),
    }


def main(argv: list[str]) -> int:
    stats = {p.stem: classify(p) for p in sorted(PACKAGE.glob("*.py"))}
    total = {k: sum(s[k] for s in stats.values()) for k in next(iter(stats.values()))}
    share = total["logic"] / total["lines"]
    if "--json" in argv:
        print(json.dumps({"modules": stats, "total": total, "logic_share": round(share, 3)}))
        return 0
    print("| Module | Lines | Logic | Checks | Docstrings | Blank or comment |")
    print("|---|---|---|---|---|---|")
    for name, s in [*stats.items(), ("all", total)]:
        cells = [s[k] for k in ("lines", "logic", "checks", "docs", "blank_or_comment")]
        print(f"| `{name}` | " + " | ".join(str(c) for c in cells) + " |")
    print(f"\nModel logic: {total['logic']} of {total['lines']} lines, {share:.0%}.")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
