"""Writes bench/RESULTS.md, and the charts in bench/charts/, from pytest-benchmark's JSON.

Usage: pytest bench/ --benchmark-only --benchmark-json=bench.json
       python bench/make_results.py bench.json [later.json ...]

Each later file's groups replace the earlier files' groups of the same name whole (e.g. a
rerun of ``bench/test_step.py`` with torch installed), so every table still compares
figures of one run.
"""

import json
import pathlib
import sys
from collections import defaultdict

NOTES = "## Reading these figures"


def main(path, *later):
    data = json.loads(pathlib.Path(path).read_text())
    reruns = []
    for extra in later:
        more = json.loads(pathlib.Path(extra).read_text())
        groups = {b["group"] for b in more["benchmarks"]}
        kept = [b for b in data["benchmarks"] if b["group"] not in groups]
        data["benchmarks"] = kept + more["benchmarks"]
        reruns.append(
            f"{', '.join(sorted(groups))} from `{pathlib.Path(extra).name}` ({more['datetime']})"
        )
    by_group = defaultdict(dict)
    for b in data["benchmarks"]:
        by_group[b["group"]][b["name"]] = b
    m = data["machine_info"]
    devices = [d for b in data["benchmarks"] if (d := b["extra_info"].get("device"))]
    sizes = [b["extra_info"].get("elements", 0) for b in data["benchmarks"]]
    big = "--big " if max(sizes, default=0) >= 10**8 else ""
    lines = [
        "# Benchmark results",
        "",
        f"Machine: {m.get('cpu', {}).get('brand_raw', m.get('processor'))}, "
        f"{m.get('cpu', {}).get('count', '?')} cores; Python {m['python_version']}; "
        f"device: {devices[0] if devices else '?'}.",
        f"Date: {data['datetime']}. Command: `pytest bench/ --benchmark-only {big}"
        "--benchmark-json=bench.json && python bench/make_results.py bench.json`.",
        "All ratios are from one run, side by side (medians; the machine is shared and noisy).",
        *([f"Groups rerun and replaced: {'; '.join(reruns)}."] if reruns else []),
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
    inter = by_group.get("interleaved", {})
    if inter:
        lines += [
            "## interleaved: one step each, round-robin in alternating order (donated, float32)",
            "",
            "The figures to quote for large vectors: every round sees the same machine state.",
            "`arithmetic` moves the same bytes as `roofline` and does only the mandatory",
            "arithmetic (one square root and one division per element).",
            "",
            "| n | rounds | roofline ms | arithmetic ms | ours ms | optax ms | ours/roofline | "
            "ours/arithmetic | ours/optax | peak bytes/element (ours, optax) |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for _, b in sorted(inter.items(), key=lambda kv: kv[1]["extra_info"]["elements"]):
            e = b["extra_info"]
            peak = e.get("peak_bytes_per_element", {})
            lines.append(
                f"| {e['elements']:.0e} | {e['rounds']} | {e['roofline_ms']:.3f} | "
                f"{e['arithmetic_ms']:.3f} | {e['ours_ms']:.3f} | {e['optax_ms']:.3f} | "
                f"**{e['ours/roofline']:.2f}** | {e['ours/arithmetic']:.2f} | "
                f"**{e['ours/optax']:.2f}** | {peak.get('ours')}, {peak.get('optax')} |"
            )
        lines.append("")
    for b in by_group.get("pytrees-interleaved", {}).values():
        e = b["extra_info"]
        lines += _table(
            f"{e.get('tree', '4000-leaves').replace('-leaves', '-leaf')} optimizer step, "
            "round-robin (donated); optax-flat: optax.rmsprop on the same Flat",
            ["rounds", "optax-tree ms", "ours-tree ms", "ours-flat ms", "optax-flat ms",
             "optax-tree again ms", "optax-tree/ours-flat", "optax-tree/optax-flat",
             "optax-tree/ours-tree", "optax-tree/optax-tree again"],
            [[e["rounds"], _ms(e, "optax-tree_ms"), _ms(e, "ours-tree_ms"),
              _ms(e, "ours-flat_ms"), _ms(e, "optax-flat_ms"),
              _ms(e, "optax-tree-again_ms"), _ratio(e, "optax-tree/ours-flat"),
              _ratio(e, "optax-tree/optax-flat"), _plain(e, "optax-tree/ours-tree"),
              _plain(e, "optax-tree/optax-tree-again")]],
        )  # fmt: skip
        if e.get("skipped"):  # (over the group's --budget)
            lines[-1:-1] = ["", f"Skipped (over `--budget`): {e['skipped']}."]
    for b in by_group.get("compile-time-interleaved", {}).values():
        e = b["extra_info"]
        lines += _table(
            "trace + compile of the optimizer step, transformer tree, round-robin",
            ["rounds", "optax-tree ms", "ours-tree ms", "ours-tree/optax-tree"],
            [[e["rounds"], f"{e['optax-tree_ms']:.1f}", f"{e['ours-tree_ms']:.1f}",
              f"**{e['ours-tree/optax-tree']:.3f}**"]],
        )  # fmt: skip
    compile_rows = [
        [b["name"].removeprefix("test_").replace("_", " "), e["rounds"],
         f"{e['traced_ms']:.0f}", f"{e['per-object_ms']:.0f}", f"**{e['per-object/traced']}x**"]
        for b in by_group.get("compile", {}).values()
        for e in [b["extra_info"]]
    ]  # fmt: skip
    if compile_rows:
        lines += _table(
            "compile: a cold loop over configurations (traced numbers vs one program per "
            "configuration), round-robin",
            ["loop", "rounds", "traced ms", "per-object ms", "per-object/traced"],
            compile_rows,
        )
    for b in by_group.get("fit", {}).values():
        e = b["extra_info"]
        keras_ms = f"{e['keras_ms']:.3f}" if "keras_ms" in e else "not installed"
        lines += _table(
            f"one training epoch, digits MLP ({e['examples']} examples, batch "
            f"{e['batch_size']}), round-robin",
            ["rounds", "fit ms", "Python loop of jitted steps ms", "keras.Model.fit ms",
             "loop/fit", "keras/fit"],
            [[e["rounds"], f"{e['fit_ms']:.3f}", f"{e['python-loop_ms']:.3f}", keras_ms,
              f"**{e['python-loop/fit']}x**", f"**{e['keras/fit']}**"]],
        )  # fmt: skip
    for b in by_group.get("fit-nnx", {}).values():
        e = b["extra_info"]
        kernels = ["fit", "hand-scan", "python-loop", "nnx-optimizer", "keras"]
        lines += _table(
            f"one training epoch, dropout + batch-norm Flax NNX digits model ({e['examples']} "
            f"examples, batch {e['batch_size']}), round-robin",
            ["rounds", *[f"{k} ms" for k in kernels if f"{k}_ms" in e],
             *[f"{k}/fit" for k in kernels[1:] if f"{k}/fit" in e],
             *(["fit/hand-scan per round (median)"] if "fit/hand-scan paired" in e else []),
             "hand-scan/fit (10 epochs)", "keras/fit (10 epochs)"],
            [[e["rounds"], *[f"{e[f'{k}_ms']:.3f}" for k in kernels if f"{k}_ms" in e],
              *[f"**{e[f'{k}/fit']}**" for k in kernels[1:] if f"{k}/fit" in e],
              *([f"**{e['fit/hand-scan paired']}x**"] if "fit/hand-scan paired" in e else []),
              f"**{e['hand-scan/fit (10 epochs)']}**",
              f"**{e.get('keras/fit (10 epochs)', 'not installed')}**"]],
        )  # fmt: skip
    for b in by_group.get("nnx-sweep", {}).values():
        e = b["extra_info"]
        lines += _table(
            f"NNX sweep: {e['runs']} runs (256 configurations x 3 seeds, dropout + batch-norm) "
            f"x {e['epochs']} epochs, round-robin",
            ["one program ms", "fit-loop/program per run", "best validation accuracy"],
            [[f"{b['stats']['median'] * 1e3:.0f}", f"**{e['fit-loop/program (per run)']}x**",
              e["best_val_accuracy"]]],
        )  # fmt: skip
    for b in by_group.get("tune-optuna", {}).values():
        e = b["extra_info"]
        keras = e.get("keras-optimize/batched (per trial)", "keras not installed")
        lines += _table(
            f"Optuna TPE, {e['trials']} trials of 4 hyperparameters, digits x {e['epochs']} "
            f"epochs: batches of {e['batch']} as one program vs study.optimize, round-robin",
            ["batched ms (warm)", "batched ms (cold)", "optimize/batched per trial (cold)",
             "optimize-injected/batched per trial", "keras-optimize/batched per trial"],
            [[f"{e['batched_ms']:.0f}", f"{e['batched cold ms']:.0f}",
              f"**{e['optimize/batched cold (per trial)']}x**",
              f"**{e['optimize-injected/batched (per trial)']}x**", f"**{keras}**"]],
        )  # fmt: skip
    for b in by_group.get("tune-optuna-quality", {}).values():
        e = b["extra_info"]
        tpe, rnd = e.get("configurations trained (tpe, random)", (256, 4096))
        lines += _table(
            f"batched TPE ({tpe} trials) vs a {rnd}-configuration random search, best val loss",
            [f"random {rnd} (per seed)", f"TPE {tpe} (per seed)", "TPE/random (worst seed)"],
            [[e.get("random best", e.get("random 4096 best")),
              e.get("tpe best", e.get("tpe 256 best")), f"**{e['tpe/random (worst seed)']}**"]],
        )  # fmt: skip
    for b in by_group.get("hyperband", {}).values():
        e = b["extra_info"]
        lines += _table(
            "Hyperband (Optuna's pruner, TPE, 96 trials) vs the 256-configuration grid",
            ["grid best", "hyperband/grid best (per seed)", "epochs fraction (per seed)"],
            [[e["grid best"], e["hyperband/grid best (per seed)"],
              e["epochs fraction (per seed)"]]],
        )  # fmt: skip
    for b in by_group.get("pbt", {}).values():
        e = b["extra_info"]
        lines += _table(
            "PBT (32 members) vs random search (32 configurations), same epochs, round-robin",
            ["PBT best (per seed)", "random best (per seed)", "PBT/random time"],
            [[e["pbt best (per seed)"], e["random best (per seed)"], e["pbt/random time"]]],
        )  # fmt: skip
    for b in by_group.get("digits-sweep", {}).values():
        e = b["extra_info"]
        lines += _table(
            f"digits sweep: {e['runs']} runs (256 configurations x 3 seeds) x {e['epochs']} "
            "epochs, round-robin",
            ["one program ms", "fit-loop/program per run", "keras-loop/program per run",
             "best val loss (full, halving)", "halving/full", "halving budget"],
            [[f"{e['program_ms']:.0f}", f"**{e['fit-loop/program (per run)']}x**",
              f"**{e['keras-loop/program (per run)']}**",
              e["best val loss (full grid, halving)"], e["halving / full best"],
              e["halving budget fraction"]]],
        )  # fmt: skip
    for b in by_group.get("memory-sweep", {}).values():
        e = b["extra_info"]
        lines += _table(
            f"memory: {e['runs']} configurations of a {e['params']:,}-parameter model, "
            f"each sweep in its own process ({e['ram_gib']} GiB RAM)",
            ["budget", "budget GiB", "one program GiB (XLA)", "chunk x chunks", "peak RSS GiB",
             "s"],
            [[name, e[f"{name}: budget_gib"], e[f"{name}: one_program_gib"],
              e[f"{name}: chunk x chunks"], f"**{e[f'{name}: peak_rss_gib']}**",
              e[f"{name}: seconds"]] for name in ("default", "tenth")],
        )  # fmt: skip
    for b in by_group.get("checkpoint", {}).values():
        e = b["extra_info"]
        n = e.get("epochs", 100)
        lines += _table(
            f"fit(checkpoint=DIR) on the digits task, 1 and {n} epochs, round-robin",
            ["rounds", "epoch ms (plain)", "epoch ms (checkpoint)", "per-epoch overhead",
             f"whole {n}-epoch fit overhead", "per-call ms", "every epoch written (unpaced)"],
            [[e["rounds"], e["epoch ms (plain)"], e["epoch ms (checkpoint)"],
              f"**{e['per-epoch overhead']:.1%}**", f"{e[f'whole {n}-epoch fit overhead']:.1%}",
              e["per-call ms (ckpt-1 - plain-1)"],
              f"{e['unpaced (every epoch written) overhead']:.1%}"]],
        )  # fmt: skip
    for b in by_group.get("train-step", {}).values():
        e = b["extra_info"]
        c = e["compile_s"]
        lines += _table(
            f"full train step (grad + update + apply), {e['model']} ({e['leaves']} leaves), "
            "round-robin (donated)",
            ["rounds", "optax-tree ms", "ours-tree ms", "ours-flat ms", "optax-flat ms",
             "optax-tree/ours-flat", "optax-tree/optax-flat",
             "compile s (optax-tree, ours-tree, ours-flat)"],
            [[e["rounds"], f"{e['optax-tree_ms']:.3f}", f"{e['ours-tree_ms']:.3f}",
              f"{e['ours-flat_ms']:.3f}", _ms(e, "optax-flat_ms"),
              f"**{e['optax-tree/ours-flat']:.1f}x**", _ratio(e, "optax-tree/optax-flat"),
              f"{c['optax-tree']}, {c['ours-tree']}, {c['ours-flat']}"]],
        )  # fmt: skip
    torch_rows = by_group.get("torch", {})
    if torch_rows and step:
        lines += [
            "## torch.optim.RMSprop(foreach=True) on the CPU vs ours (donated), same settings",
            "",
            "| n | torch ms | ours donated ms | torch/ours |",
            "|---|---|---|---|",
        ]
        for name, b in sorted(torch_rows.items(), key=lambda kv: kv[1]["extra_info"]["elements"]):
            tag = name[name.index("[") + 1 : -1]
            ours = step.get(f"test_step[{tag}-ours-donated]")
            if ours:
                lines.append(
                    f"| {b['extra_info']['elements']:.0e} | {ms(b):.3f} | {ms(ours):.3f} | "
                    f"{ms(b) / ms(ours):.2f} |"
                )
        version = next(iter(torch_rows.values()))["extra_info"].get("torch")
        lines += ["", f"torch {version}.", ""]
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
    stamp = f"{lines[2].removeprefix('Machine: ')} {data['datetime'][:16]}, pytest bench/ {big}"
    stamp = stamp.rstrip()
    if reruns:  # (groups of later runs: named in RESULTS.md)
        stamp += f"; rerun: {', '.join(r.split(' from ')[0] for r in reruns)} (bench/RESULTS.md)"
    charts(by_group, pathlib.Path(__file__).with_name("charts"), stamp)
    out = pathlib.Path(__file__).with_name("RESULTS.md")
    # the hand-written reading of the figures, from its heading on, is kept
    old = out.read_text() if out.exists() else ""
    notes = old[old.index(NOTES) :] if NOTES in old else ""
    out.write_text("\n".join(lines) + "\n" + ("\n" + notes if notes else ""))
    print(f"wrote {out}")


def _ms(e: dict, key: str) -> str:
    return f"{e[key]:.3f}" if key in e else "-"


def _plain(e: dict, key: str) -> str:
    return f"{e[key]:.2f}" if key in e else "-"


def _ratio(e: dict, key: str) -> str:
    return f"**{e[key]:.1f}x**" if key in e else "-"


def _table(title, columns, rows):
    """A section: ``## title``, a Markdown table of ``columns`` and ``rows``, a blank line."""
    cells = lambda row: "| " + " | ".join(str(c) for c in row) + " |"  # noqa: E731
    return [f"## {title}", "", cells(columns), "|" + "---|" * len(columns), *map(cells, rows), ""]


def charts(by_group, folder, stamp=""):
    """PNG charts of the figures: step time against size, and the speed-ups."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(exist_ok=True)
    med = lambda b: b["stats"]["median"] * 1e3  # noqa: E731
    step, roof = by_group.get("step-throughput", {}), by_group.get("roofline", {})
    inter, torch_rows = by_group.get("interleaved", {}), by_group.get("torch", {})
    if step and roof:
        fig, ax = plt.subplots(figsize=(7, 5))
        series = {
            "ours (donated)": [
                (b["extra_info"]["elements"], med(b))
                for k, b in step.items()
                if "-ours-donated" in k
            ],
            "optax.rmsprop (donated)": [
                (b["extra_info"]["elements"], med(b))
                for k, b in step.items()
                if "-optax-donated" in k
            ],
            "copy roofline (20 B/element)": [
                (b["extra_info"]["elements"], med(b)) for b in roof.values()
            ],
            "minimal exact RMSProp kernel": [
                (b["extra_info"]["elements"], b["extra_info"]["arithmetic_ms"])
                for b in inter.values()
            ],
            "torch.optim.RMSprop (foreach)": [
                (b["extra_info"]["elements"], med(b)) for b in torch_rows.values()
            ],
        }
        styles = ["o-", "s--", "k:", "^-.", "x-"]
        for (name, pts), style in zip(series.items(), styles):
            if pts:
                n, ms = zip(*sorted(pts))
                ax.loglog(n, ms, style, label=name)
        ax.set(
            xlabel="elements (float32)",
            ylabel="ms per step (median)",
            title="One RMSProp step + apply, against size",
        )
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        fig.text(0.01, 0.01, stamp, fontsize=7, color="0.4")
        fig.tight_layout(rect=(0, 0.03, 1, 1))
        fig.savefig(folder / "step_time.png", dpi=100)
        plt.close(fig)
    bars, flat_only = {}, set()  # flat_only: optax on a Flat (flatten's share, not ours)
    for group, label in (("pytrees-interleaved", "step"), ("train-step", "train step")):
        for b in by_group.get(group, {}).values():
            e = b["extra_info"]
            leaves = e.get("leaves") or int(str(e.get("tree", "4000")).split("-")[0])
            if "optax-tree/ours-flat" in e:  # (absent where the budget skipped optax's)
                bars[f"{leaves}-leaf {label}:\noptax / ours-flat"] = e["optax-tree/ours-flat"]
            if "optax-tree/optax-flat" in e:
                name = f"{leaves}-leaf {label}:\noptax / optax on Flat"
                bars[name] = e["optax-tree/optax-flat"]
                flat_only.add(name)
    for b in by_group.get("compile", {}).values():
        if b["name"] == "test_fit_loop_over_16_configurations":
            bars["fit over 16 configs:\nper-object / traced"] = b["extra_info"]["per-object/traced"]
    for b in by_group.get("fit", {}).values():
        bars["fit epoch:\nPython loop / fit"] = b["extra_info"]["python-loop/fit"]
        if isinstance(b["extra_info"].get("keras/fit"), int | float):
            bars["fit epoch:\nKeras fit / fit"] = b["extra_info"]["keras/fit"]
    for b in by_group.get("digits-sweep", {}).values():
        e = b["extra_info"]
        bars["digits sweep:\nfit loop / program"] = e["fit-loop/program (per run)"]
        if isinstance(e.get("keras-loop/program (per run)"), int | float):
            bars["digits sweep:\nKeras loop / program"] = e["keras-loop/program (per run)"]
    sweep = by_group.get("sweep", {})
    one, loop = sweep.get("test_sweep_one_program"), sweep.get("test_python_loop_of_optax_runs")
    if one and loop:
        bars["problem sweep:\nPython loop / program"] = (
            one["extra_info"]["config_steps_per_s"] / loop["extra_info"]["config_steps_per_s"]
        )
    if bars:
        fig, ax = plt.subplots(figsize=(9, 5))
        names = list(bars)
        colours = ["tab:gray" if n in flat_only else "tab:blue" for n in names]
        ax.barh(names, [bars[n] for n in names], color=colours)
        ax.set_xscale("log")
        for i, n in enumerate(names):
            ax.text(bars[n], i, f" {bars[n]:,.1f}x", va="center")
        ax.axvline(1.0, color="k", lw=0.8)
        ax.invert_yaxis()
        ax.set(
            xlabel="speed-up (medians from one bench run, log scale)",
            title="Where jax-rmsprop is faster (grey: optax on the same Flat, flatten's share)",
        )
        fig.text(0.01, 0.01, stamp, fontsize=7, color="0.4")
        fig.tight_layout(rect=(0, 0.03, 1, 1))
        fig.savefig(folder / "speedups.png", dpi=100)
        plt.close(fig)


if __name__ == "__main__":
    main(*(sys.argv[1:] or ["bench.json"]))
