"""MkDocs hook: the benchmark charts (``bench/charts/*.png``, drawn by
``bench/make_results.py``) become part of the site under ``bench-charts/``."""

from pathlib import Path

from mkdocs.structure.files import File

CHARTS = Path(__file__).resolve().parent.parent / "bench" / "charts"


def on_files(files, config):
    for png in sorted(CHARTS.glob("*.png")):
        files.append(
            File.generated(config, f"bench-charts/{png.name}", abs_src_path=str(png))
        )
    return files
