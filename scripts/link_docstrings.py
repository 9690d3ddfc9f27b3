"""Links the API objects the rendered docstrings name: ``fit`` -> [`fit`][jax_rmsprop.fit].

The API page (mkdocstrings) renders the docstrings of the public objects; a name written
as code there is a link to that object's entry. ``python scripts/link_docstrings.py``
rewrites the sources; ``--check`` lists what is left unlinked (a test runs it). Left
alone: summary lines (kept plain, as help() shows them), an object's own name, and
``checkpoint``, which in the docstrings is almost always the argument, not the module.
"""

import ast
import functools
import pathlib
import re
import sys

SRC = pathlib.Path(__file__).resolve().parent.parent / "src" / "jax_rmsprop"
TOP = [
    "rmsprop",
    "scale_by_rms",
    "RMSPropState",
    "flatten",
    "Flat",
    "fit",
    "History",
    "FitInterrupted",
    "Task",
    "run",
    "Trajectory",
    "sweep",
    "SweepResult",
    "tune",
    "TuneResult",
    "pbt",
    "PBTResult",
    "Interrupted",
    "SweepInterrupted",
    "ProcessLost",
    "CheckpointMismatch",
    "CheckpointCorrupt",
]
MODULES = ["compat", "checkpoint", "problems", "report", "plots"]
PUBLIC_FILES = {m + ".py" for m in MODULES}


def targets():
    """Code name -> the identifier of its API page entry."""
    t = {n: f"jax_rmsprop.{n}" for n in TOP}
    for m in MODULES:
        if m != "checkpoint":  # (the argument's name, everywhere it is written bare)
            t[m] = f"jax_rmsprop.{m}"
        tree = ast.parse((SRC / f"{m}.py").read_text())
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
                t[f"{m}.{node.name}"] = f"jax_rmsprop.{m}.{node.name}"
    return t


def rendered_docstrings(path):
    """(owner name, docstring node) for what the API page shows from ``path``."""
    tree = ast.parse(path.read_text())
    out = []

    def doc(node):
        b = getattr(node, "body", [])
        if (
            b
            and isinstance(b[0], ast.Expr)
            and isinstance(b[0].value, ast.Constant)
            and isinstance(b[0].value.value, str)
        ):
            return b[0].value

    mod = path.stem
    if path.name in PUBLIC_FILES and doc(tree):
        out.append((mod, doc(tree)))
    for node in tree.body:
        if not isinstance(node, (ast.FunctionDef, ast.ClassDef)) or node.name.startswith("_"):
            continue
        if path.name not in PUBLIC_FILES and node.name not in TOP:
            continue
        owner = node.name if path.name not in PUBLIC_FILES else f"{mod}.{node.name}"
        if doc(node):
            out.append((owner, doc(node)))
        if isinstance(node, ast.ClassDef):
            for sub in node.body:
                if isinstance(sub, ast.FunctionDef) and not sub.name.startswith("_") and doc(sub):
                    out.append((owner, doc(sub)))
    return out


def _link(t, owner, m):
    name = m.group(1)
    return m.group(0) if name == owner else f"[`{name}`][{t[name]}]"


def main(check=False, src=SRC):
    """Links (or, with ``check``, lists) the unlinked names: ``[(file, line)]``."""
    t = targets()
    pat = re.compile(r"``(" + "|".join(sorted(map(re.escape, t), key=len, reverse=True)) + r")``")
    changed = []
    for path in sorted(src.glob("*.py")):
        lines = path.read_text().splitlines(keepends=True)
        for owner, node in rendered_docstrings(path):
            for i in range(node.lineno, node.end_lineno):  # not the summary line
                new = pat.sub(functools.partial(_link, t, owner), lines[i])
                if new != lines[i]:
                    changed.append((path.name, i + 1))
                    lines[i] = new
        if not check:
            path.write_text("".join(lines))
    return changed


if __name__ == "__main__":
    left = main(check="--check" in sys.argv)
    for name, line in left:
        print(f"{name}:{line}")
    sys.exit(1 if left and "--check" in sys.argv else 0)
