"""The ratios of ``bench/device_check.sh``'s groups, one line per benchmark.

``python bench/device_summary.py step.json pytrees.json ...``: every ratio (an
``extra_info`` key with a ``/`` in it) and the GB/s each benchmark recorded, with the
device's name; a file missing (its group failed or ran out of time) is named.
"""

import json
import pathlib
import sys


def main(paths: list[str]) -> None:
    for path in paths:
        p = pathlib.Path(path)
        if not p.exists():
            print(f"{p.name}: missing (the group failed or ran out of time)")
            continue
        data = json.loads(p.read_text())
        print(f"{p.name}: {data['machine_info'].get('cpu', {}).get('brand_raw', '')}")
        for b in data["benchmarks"]:
            info = b["extra_info"]
            picked = {k: v for k, v in info.items() if "/" in k or k in ("device", "n")}
            print(f"  {b['name']}: {picked}")


if __name__ == "__main__":
    main(sys.argv[1:])
