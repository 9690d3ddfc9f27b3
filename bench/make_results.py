"""Writes bench/RESULTS.md from pytest-benchmark's JSON.

Usage: pytest bench/ --benchmark-only --benchmark-json=bench.json
       python bench/make_results.py bench.json
"""

import json
import pathlib
import sys
from collections import defaultdict


def main(path):
    data = json.loads(pathlib.Path(path).read_text())
    by_group = defaultdict(dict)
    for b in data["benchmarks"]:
        by_group[b["group"]][b["name"]] = b
    m = data["machine_info"]
    lines = [
        "# Benchmark results",
        "",
        f"Machine: {m.get('cpu', {}).get('brand_raw', m.get('processor'))}, "
        f"{m.get('cpu', {}).get('count', '?')} cores; Python {m['python_version']}; "
        f"device: {next(iter(data['benchmarks']))['extra_info'].get('device', '?')}.",
        f"Date: {data['datetime']}. Command: `pytest bench/ --benchmark-only "
        "--benchmark-json=bench.json && python bench/make_results.py bench.json`.",
        "All ratios are from one run, side by side (medians; the machine is shared and noisy).",
        "",
    ]
    ms = lambda b: b["stats"]["median"] * 1e3  # noqa: E731

    step, roof = by_group.get("step-throughput", {}), by_group.get("roofline", {})
    if step:
        lines += [
            "## step-throughput and roofline (float32, one step + apply)",
            "",
            "| n | roofline ms | ours donated ms | optax donated ms | ours/roofline | "
            "ours/optax | ours copied ms | optax copied ms | donation speed-up (ours) |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r_name, r in sorted(roof.items(), key=lambda kv: kv[1]["extra_info"]["elements"]):
            n = r["extra_info"]["elements"]
            tag = r_name[r_name.index("[") + 1 : -1]
            get = lambda impl, d: step.get(f"test_step[{tag}-{impl}-{d}]")  # noqa: E731, B023
            od, xd, oc, xc = (
                get("ours", "donated"),
                get("optax", "donated"),
                get("ours", "copied"),
                get("optax", "copied"),
            )
            if not all((od, xd, oc, xc)):
                continue
            lines.append(
                f"| {n:.0e} | {ms(r):.3f} | {ms(od):.3f} | {ms(xd):.3f} | {ms(od) / ms(r):.2f} | "
                f"{ms(od) / ms(xd):.2f} | {ms(oc):.3f} | {ms(xc):.3f} | {ms(oc) / ms(od):.1f}x |"
            )
        lines.append("")
    for group, title in (
        ("pytrees", "optimizer step on many-leaf trees (donated)"),
        ("compile-time", "jit(step).lower().compile(), transformer tree"),
        ("sweep", "sweep: 64 x 64 configs x 1000 steps vs a Python loop"),
        ("convergence", "convergence: steps and time to loss - min <= 1e-3, max 5000 steps"),
    ):
        rows = by_group.get(group, {})
        if not rows:
            continue
        lines += [f"## {title}", "", "| benchmark | median ms | extra |", "|---|---|---|"]
        for name, b in sorted(rows.items()):
            extra = {k: v for k, v in b["extra_info"].items() if k != "device"}
            lines.append(f"| {name} | {ms(b):.3f} | {extra} |")
        lines.append("")
        if group == "pytrees":
            for tree in ("4000-leaves", "transformer"):
                get = lambda v: next((b for k, b in rows.items() if tree in k and v in k), None)  # noqa: E731, B023
                ot, tr, fl = get("optax-tree"), get("ours-tree"), get("ours-flat")
                if ot and tr and fl:
                    lines.append(
                        f"- {tree}: optax-tree / ours-flat = **{ms(ot) / ms(fl):.1f}x**, "
                        f"optax-tree / ours-tree = {ms(ot) / ms(tr):.2f}x"
                    )
            lines.append("")
        if group == "sweep":
            one = rows.get("test_sweep_one_program")
            loop = rows.get("test_python_loop_of_optax_runs")
            if one and loop:
                r = (
                    one["extra_info"]["config_steps_per_s"]
                    / loop["extra_info"]["config_steps_per_s"]
                )
                lines += [f"- throughput ratio (config-steps/s): **{r:,.0f}x**", ""]
    out = pathlib.Path(__file__).with_name("RESULTS.md")
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "bench.json")
