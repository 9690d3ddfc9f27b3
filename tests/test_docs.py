"""The examples in the docstrings run and print what they say."""

import doctest
import os
import pathlib
import re
import subprocess
import sys
import textwrap

import pytest

from jax_rmsprop import _transform, checkpoint


@pytest.mark.parametrize("module", [_transform, checkpoint], ids=lambda m: m.__name__)
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0


DOCS = pathlib.Path(__file__).resolve().parent.parent / "docs"
BLOCK = re.compile(r"^( *)```python\n(.*?)^\1```", re.S | re.M)


def _examples(page: pathlib.Path) -> str:
    """The page's ``python`` code blocks (in tabs too), in order, as one program."""
    blocks = [textwrap.dedent(code) for _, code in BLOCK.findall(page.read_text())]
    return "\n".join(blocks)


PAGES_WITH_EXAMPLES = [p for p in sorted(DOCS.glob("*.md")) if _examples(p)]


def test_every_guide_page_has_examples():
    names = {p.name for p in PAGES_WITH_EXAMPLES}
    guides = {"index.md", "update-rule.md", "porting.md", "pytrees.md", "runs-and-sweeps.md"}
    guides |= {"training.md", "long-runs.md", "interop.md", "models.md", "tuning.md"}
    assert guides <= names, guides - names


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES_WITH_EXAMPLES, ids=lambda p: p.name)
def test_site_examples_run(page):
    """Every ``python`` block of a docs page runs, in order, in a fresh interpreter (as a
    reader would paste it: JAX's default configuration, not the tests' strict one).
    ``py`` blocks show other frameworks' code, ``text`` blocks signatures."""
    env = {k: v for k, v in os.environ.items() if k not in ("JAX_ENABLE_X64", "XLA_FLAGS")}
    proc = subprocess.run(
        [sys.executable, "-c", _examples(page)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        cwd=page.parent,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
