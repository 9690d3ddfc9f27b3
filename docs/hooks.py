"""MkDocs hook: the benchmark charts become part of the site.

``bench/make_results.py`` draws them in ``bench/charts/``, beside ``bench/RESULTS.md``;
the site serves them under ``bench-charts/``.
"""

from pathlib import Path

from mkdocs.structure.files import File

CHARTS = Path(__file__).resolve().parent.parent / "bench" / "charts"


def on_files(files, config):
    """Adds every chart to the site's files (MkDocs's ``on_files`` event)."""
    for png in sorted(CHARTS.glob("*.png")):
        files.append(File.generated(config, f"bench-charts/{png.name}", abs_src_path=str(png)))
    return files
