"""The ratios of ``bench/device_check.sh``'s groups, one line per benchmark.

``python bench/device_summary.py step.json pytrees.json ...``: every ratio (an
``extra_info`` key with a ``/`` in it), the GB/s, the milliseconds named ``... ms`` and
what a group's budget skipped, with the device's name; a file missing or unreadable (its
group failed, or ran out of time while writing it) is named.
"""

import json
import pathlib
import sys

SHOWN = ("device", "n", "tree", "skipped", "compile s", "GB/s")


def main(paths: list[str]) -> None:
    for path in paths:
        p = pathlib.Path(path)
        try:
            data = json.loads(p.read_text())
        except FileNotFoundError:
            print(f"{p.name}: missing (the group failed, was skipped or ran out of time)")
            continue
        except json.JSONDecodeError:
            print(f"{p.name}: unreadable (its group was stopped while writing it?)")
            continue
        print(f"{p.name}: {data['machine_info'].get('cpu', {}).get('brand_raw', '')}")
        for b in data["benchmarks"]:
            info = b["extra_info"]
            picked = {k: v for k, v in info.items() if "/" in k or k in SHOWN or k.endswith(" ms")}
            print(f"  {b['name']}: {picked}")


if __name__ == "__main__":
    main(sys.argv[1:])
