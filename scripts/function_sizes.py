"""Functions of ``src/jax_rmsprop`` longer than a limit, in code lines.

A code line is a line of the function's body that holds code: blank lines, comment-only
lines and the docstring are not counted (nested functions count toward their parent and
are also reported on their own).

Usage: ``python scripts/function_sizes.py [--limit 60] [paths...]``; exits 1 when a
function is over the limit (``tests/output/test_docs.py`` runs it).
"""

from __future__ import annotations

import argparse
import ast
import io
import sys
import tokenize
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "jax_rmsprop"


def code_lines(source: str) -> set[int]:
    """The line numbers of ``source`` that hold a token other than a comment."""
    lines: set[int] = set()
    skip = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type not in skip and tok.type != tokenize.ENDMARKER:
            lines.update(range(tok.start[0], tok.end[0] + 1))
    return lines


def sizes(path: Path) -> list[tuple[str, int, int]]:
    """``(qualified name, first line, code lines)`` of every function in ``path``."""
    source = path.read_text()
    tree = ast.parse(source)
    code = code_lines(source)
    out = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                body = child.body
                if (
                    body
                    and isinstance(body[0], ast.Expr)
                    and isinstance(body[0].value, ast.Constant)
                    and isinstance(body[0].value.value, str)
                ):
                    doc = set(range(body[0].lineno, (body[0].end_lineno or 0) + 1))
                    body = body[1:]
                else:
                    doc = set()
                if body:
                    first, last = body[0].lineno, max(n.end_lineno or n.lineno for n in body)
                    n = len((code - doc) & set(range(first, last + 1)))
                else:
                    n = 0
                name = f"{prefix}{child.name}"
                out.append((name, child.lineno, n))
                visit(child, f"{name}.")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")

    visit(tree, "")
    return out


def over(limit: int, paths: list[Path]) -> list[str]:
    """``path:line name (n code lines)`` for every function over ``limit``."""
    found = []
    for path in paths:
        for name, line, n in sizes(path):
            if n > limit:
                found.append(f"{path.name}:{line} {name} ({n} code lines)")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=60)
    parser.add_argument("paths", nargs="*", type=Path)
    args = parser.parse_args(argv)
    paths = args.paths or sorted(SRC.glob("*.py"))
    found = over(args.limit, paths)
    print("\n".join(found) if found else f"no function over {args.limit} code lines")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
