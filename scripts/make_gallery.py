"""Regenerates every picture of docs/gallery.md.

The demo's pictures: ``jax-rmsprop demo`` is run into a temporary folder and what it
writes (PNG, GIF) is copied into the gallery, so the gallery is exactly what a user's demo
draws; then the tuning pictures (``make_search_gallery.py``).

Usage: python scripts/make_gallery.py [OUT_DIR]   (default: docs/gallery)
"""

import shutil
import sys
import tempfile
from pathlib import Path

import make_search_gallery

from jax_rmsprop import cli


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        if cli.main(["demo", "--out", tmp]) != 0:
            sys.exit("the demo failed")
        for picture in sorted(Path(tmp).iterdir()):
            if picture.suffix in (".png", ".gif"):
                shutil.copyfile(picture, out / picture.name)
                print(f"copied {picture.name}")
    make_search_gallery.main(out)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/gallery"))
