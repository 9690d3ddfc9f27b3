"""The house's shape: layers imported downward only, no private name across modules,
functions of at most 60 code lines (issue 19).

Data enter at the top (``cli``, the public API), flow down once and come back up once: a
module imports only modules of its own layer or below. A new module must be placed in
a layer here, which is the moment to decide where it belongs.
"""

import ast
import importlib.util
import pathlib

SRC = pathlib.Path(__file__).resolve().parents[1] / "src" / "jax_rmsprop"
SCRIPTS = pathlib.Path(__file__).resolve().parents[1] / "scripts"

LAYERS = [
    # shared pieces that know nothing of the rest
    {"_conventions", "_validation", "_host", "_compile", "_jax_compat", "_signals", "_faults",
     "_version", "_loop", "_progress", "_flat", "_model", "problems", "_quantized"},
    # the update rule
    {"_transform", "_traced", "_rmsprop", "compat"},
    # persistence
    {"checkpoint", "_resume", "_resumable", "_sweep_progress"},
    # closed-form runs and sweeps; training on data
    {"_run", "_space", "_sweep", "_inputs", "_epoch", "_fit"},
    # tuning
    {"_plan", "_tune_result", "_search", "_tune", "_pbt"},
    # output and entry points
    {"report", "plots", "_demo", "cli", "__init__"},
]  # fmt: skip


def _imports(path: pathlib.Path) -> list[tuple[str, str]]:
    """``(module, name)`` of every relative import in ``path`` (function-level included)."""
    found = []
    # every relative import, at any depth

    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            for alias in node.names:
                if node.module is None:
                    found.append((alias.name, ""))
                else:
                    found.append((node.module.split(".")[0], alias.name))
    return found


def _layer(module: str) -> int:
    return next(i for i, layer in enumerate(LAYERS) if module in layer)


def test_every_module_has_a_layer():
    modules = {p.stem for p in SRC.glob("*.py")}
    placed = set().union(*LAYERS)
    assert modules - placed == set(), "place the new module in a layer of LAYERS"
    assert placed - modules == set(), "a module in LAYERS is gone: remove it there"


def test_imports_go_down_the_layers_only():
    upward = [
        f"{p.stem} (layer {_layer(p.stem)}) imports {m} (layer {_layer(m)})"
        for p in sorted(SRC.glob("*.py"))
        for m, _ in _imports(p)
        if _layer(m) > _layer(p.stem)
    ]
    assert upward == []


def test_no_private_name_crosses_a_module():
    crossing = [
        f"{p.stem} imports {name} from {m}"
        for p in sorted(SRC.glob("*.py"))
        for m, name in _imports(p)
        if name.startswith("_") and not name.startswith("__")
    ]
    assert crossing == []


def test_no_private_attribute_of_another_module_is_read():
    reads = []
    for p in sorted(SRC.glob("*.py")):
        tree = ast.parse(p.read_text())
        modules: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module is None:
                modules.update(alias.asname or alias.name for alias in node.names)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in modules
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
            ):
                reads.append(f"{p.stem}:{node.lineno} reads {node.value.id}.{node.attr}")
    assert reads == []


def test_no_function_is_over_60_code_lines():
    spec = importlib.util.spec_from_file_location("sizes", SCRIPTS / "function_sizes.py")
    sizes = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sizes)
    assert sizes.over(60, sorted(SRC.glob("*.py"))) == []
    # the counter counts code, not docstrings, comments or blank lines
    sample = pathlib.Path(__file__)
    counted = {name: n for name, _, n in sizes.sizes(sample)}
    assert counted["_layer"] == 1
    assert counted["_imports"] == 9  # docstring and comment-only lines left out
