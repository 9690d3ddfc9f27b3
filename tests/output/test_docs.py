"""The examples in the docstrings run and print what they say."""

import doctest
import importlib.util
import os
import pathlib
import re
import subprocess
import sys
import textwrap

import pytest

from jax_rmsprop import _rmsprop, checkpoint


@pytest.mark.parametrize("module", [_rmsprop, checkpoint], ids=lambda m: m.__name__)
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0


DOCS = pathlib.Path(__file__).resolve().parents[2] / "docs"
BLOCK = re.compile(r"^( *)```python\n(.*?)^\1```", re.S | re.M)


def _examples(page: pathlib.Path) -> str:
    """The page's ``python`` code blocks (in tabs too), in order, as one program."""
    blocks = [textwrap.dedent(code) for _, code in BLOCK.findall(page.read_text())]
    return "\n".join(blocks)


README = DOCS.parent / "README.md"
PAGES_WITH_EXAMPLES = [README, *(p for p in sorted(DOCS.glob("*.md")) if _examples(p))]

# The frameworks a page may show that the package does not need: a page that imports one
# runs where it is installed (in CI's newest versions; Flax needs a newer JAX than the
# oldest versions' job has).
OPTIONAL = ("flax", "equinox", "keras", "torch", "orbax")


def _missing_frameworks(code: str) -> list[str]:
    imported = set(re.findall(r"^\s*(?:from|import)\s+(\w+)", code, re.M))
    return [m for m in OPTIONAL if m in imported and importlib.util.find_spec(m) is None]


def test_every_guide_page_has_examples():
    names = {p.name for p in PAGES_WITH_EXAMPLES}
    guides = {"index.md", "update-rule.md", "porting.md", "pytrees.md", "runs-and-sweeps.md"}
    guides |= {"training.md", "long-runs.md", "interop.md", "models.md", "tuning.md"}
    assert guides <= names, guides - names


def test_the_readme_is_short_and_names_every_extra():
    """At most 150 lines, three runnable blocks (run below with the docs pages), and the
    extras it names are the ones pyproject.toml defines, every one of them."""
    import tomllib

    text = README.read_text()
    assert len(text.splitlines()) <= 150
    assert len(BLOCK.findall(text)) >= 3
    pyproject = tomllib.loads((DOCS.parent / "pyproject.toml").read_text())
    extras = set(pyproject["project"]["optional-dependencies"])
    groups = re.findall(r"(?:\.|jax-rmsprop|`)\[([a-z,]+)\]", text)  # .[plot,tune], `[all]`
    named = {e for group in groups for e in group.split(",")}
    assert named == extras, named ^ extras


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES_WITH_EXAMPLES, ids=lambda p: p.name)
def test_site_examples_run(page):
    """Every ``python`` block of a docs page runs, in order, in a fresh interpreter (as a
    reader would paste it: JAX's default configuration, not the tests' strict one).
    ``py`` blocks show other frameworks' code, ``text`` blocks signatures."""
    code = _examples(page)
    missing = _missing_frameworks(code)
    if missing:
        pytest.skip(f"{page.name} imports {', '.join(missing)}, not installed")
    env = {k: v for k, v in os.environ.items() if k not in ("JAX_ENABLE_X64", "XLA_FLAGS")}
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        cwd=page.parent,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]


RAW_RST = (":math:", ".. math::", ".. warning::", ".. note::", ":class:", ":func:", ":meth:")


def test_docstrings_are_written_for_the_markdown_api_page():
    """The API page renders docstrings as Markdown: a reST role or directive would show
    as raw text there (math is $...$ / $$...$$, admonitions are Google-style sections)."""
    for path in sorted((pathlib.Path(__file__).parents[2] / "src" / "jax_rmsprop").glob("*.py")):
        text = path.read_text()
        for raw in RAW_RST:
            assert raw not in text, f"{path.name} has {raw!r}"


def test_docstrings_link_the_api_objects_they_name():
    """``fit`` written in a rendered docstring is a link to ``fit``'s entry on the API page
    (``[`fit`][jax_rmsprop.fit]``); ``scripts/link_docstrings.py`` writes them."""
    root = pathlib.Path(__file__).parents[2]
    spec = importlib.util.spec_from_file_location("link", root / "scripts" / "link_docstrings.py")
    link = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(link)
    assert link.main(check=True) == []


@pytest.mark.slow
def test_the_built_api_page_shows_math_and_no_raw_rest(tmp_path):
    pytest.importorskip("mkdocs")
    root = pathlib.Path(__file__).parents[2]
    site = tmp_path / "site"
    env = os.environ | {"NO_MKDOCS_2_WARNING": "1"}
    build = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)]
    out = subprocess.run(build, cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert not list(site.rglob("*.py")), "the build's hook is served as a file of the site"
    api = (site / "api" / "index.html").read_text()
    for raw in RAW_RST:
        assert raw not in api, raw
    # the update rule arrives as arithmatex math for MathJax, aligned
    assert '<div class="arithmatex">' in api and "\\begin{aligned}" in api
    assert '<span class="arithmatex">\\(g_t\\)</span>' in api
    assert '<details class="warning"' in api  # Google-style Warning: section
    # cross references resolve to the objects' entries (mkdocs --strict refuses broken ones)
    for name in ("fit", "rmsprop", "History", "TuneResult", "compat.torch_rmsprop"):
        assert f'href="#jax_rmsprop.{name}"' in api, name
    # compat's table of conventions is a table, not reST text
    compat = api[api.index('id="jax_rmsprop.compat"') : api.index('id="jax_rmsprop.compat.torch')]
    assert "<table>" in compat and "=====" not in compat


def test_every_speed_ratio_the_docs_quote_is_in_the_bench_results():
    """One source for benchmark claims: a ratio quoted in the README or a docs page
    (``2.47x``) must be a figure of ``bench/RESULTS.md``, where its command and date are."""
    root = pathlib.Path(__file__).parents[2]
    results = (root / "bench" / "RESULTS.md").read_text()
    figures = set(re.findall(r"(\d+(?:\.\d+)?)(?:x|\*\*|\s|\||%)", results))
    pages = [root / "README.md", *sorted((root / "docs").glob("*.md"))]
    quoted = []
    for page in pages:
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # not the code
        for ratio in re.findall(r"(?<![\w.−-])(\d+(?:\.\d+)?)x\b", text):  # not 6x in 2y²−6x
            quoted.append((page.name, ratio))
    missing = [(name, r) for name, r in quoted if r not in figures]
    assert quoted and not missing, missing
