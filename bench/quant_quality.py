"""Quality of quantized optimizer state: final validation loss against float32 state.

``python -m bench.quant_quality`` trains, for every state format (float32, bfloat16,
8-bit, 4-bit), with the same seeds and hyperparameters:

- the digits classifier widened to 64-512-512-10 (every weight matrix above the minimum
  quantized size), 20 epochs, batch 32, learning rates 1e-3 and 1e-2 x decays 0.9, 0.99
  and 0.999, 5 seeds, each format one ``tune`` program over the grid and the seeds;
- a character-level MLP language model of 1.33M parameters (16 bytes of context, a
  64-wide embedding per byte, one hidden layer of 1024, 256 outputs) on the standard
  library's own ``.py`` sources, 2000 steps of 32 at learning rate 1e-3 and decay
  0.99, 5 seeds.

The metric is the ratio of a run's final validation loss to the float32 run's of the
same seed and hyperparameters (median over runs), and divergence: a run whose final
validation loss is not finite or above the chance level (a uniform guess) where float32's
is below it. It writes the figures to a JSON file, the tables between the
``quant-quality`` markers of ``bench/RESULTS.md`` (``--results``) and the chart of state
bytes per parameter against final validation loss (``--chart``).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import pathlib
import platform
import sys
import sysconfig
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.tree_util import Partial

import jax_rmsprop

from .quality_tables import config_labels, markdown, summarise, write_results

ROOT = pathlib.Path(__file__).resolve().parents[1]
FORMATS: dict[str, dict[str, Any]] = {
    "float32": {},
    "bfloat16": {"state_dtype": jnp.bfloat16},
    "8-bit": {"state_bits": 8},
    "4-bit": {"state_bits": 4},
}
# float32 again with the learning rates moved by one part in a million: how far the
# ratio strays from 1 by chaos alone (a trajectory that differs in the last bits)
NOISE = "float32 (lr x 1.000001)"
FORMATS[NOISE] = {}
DIGITS_GRID = {"learning_rate": np.array([1e-3, 1e-2]), "decay": np.array([0.9, 0.99, 0.999])}
LM_GRID = {"learning_rate": np.array([1e-3]), "decay": np.array([0.99])}


def stdlib_text() -> bytes:
    """The standard library's top-level ``.py`` files, sorted by name, concatenated."""
    lib = pathlib.Path(sysconfig.get_paths()["stdlib"])
    return b"".join(p.read_bytes() for p in sorted(lib.glob("*.py")))


def _lm_loss(params, batch):
    ctx, nxt = batch
    h = params["emb"][ctx].reshape(ctx.shape[0], -1)
    h = jnp.tanh(h @ params["w1"] + params["b1"][None, :])
    logits = h @ params["w2"] + params["b2"][None, :]
    logp = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.mean(jnp.take_along_axis(logp, nxt[:, None], axis=1))


def _lm_init(context, embed, hidden, key):
    k0, k1, k2 = jax.random.split(key, 3)
    fan_in = context * embed
    return {
        "emb": jax.random.normal(k0, (256, embed), jnp.float32),
        "w1": jax.random.normal(k1, (fan_in, hidden), jnp.float32) * float(1 / np.sqrt(fan_in)),
        "b1": jnp.zeros(hidden, jnp.float32),
        "w2": jax.random.normal(k2, (hidden, 256), jnp.float32) * float(1 / np.sqrt(hidden)),
        "b2": jnp.zeros(256, jnp.float32),
    }


def char_lm(
    steps: int = 2000,
    batch_size: int = 32,
    context: int = 16,
    embed: int = 64,
    hidden: int = 1024,
    n_val: int = 8192,
) -> jax_rmsprop.Task:
    """A byte-level MLP language model on ``stdlib_text()``: one epoch is ``steps`` steps.

    The first 90% of the text trains, the rest validates; ``steps * batch_size`` training
    windows (and ``n_val`` validation windows) start at positions drawn once with NumPy's
    generator seeded 0, so the data are the same on every run of one Python version.
    """
    text = np.frombuffer(stdlib_text(), np.uint8)
    cut = int(0.9 * text.size)
    rng = np.random.default_rng(0)

    def windows(part, n):
        start = rng.integers(0, part.size - context, n)
        ctx = part[start[:, None] + np.arange(context)].astype(np.int32)
        return ctx, part[start + context].astype(np.int32)

    train, val = windows(text[:cut], steps * batch_size), windows(text[cut:], n_val)
    init = functools.partial(_lm_init, context, embed, hidden)
    return jax_rmsprop.Task(Partial(_lm_loss), init, train, batch_size, val, "char-lm")


def state_bytes_per_param(options: dict[str, Any], params: Any) -> float:
    """Bytes of ``rmsprop(1e-3, **options)``'s state (every leaf) per parameter."""
    tx = jax_rmsprop.rmsprop(1e-3, **options)
    state = jax.eval_shape(tx.init, params)
    n_state = sum(a.size * a.dtype.itemsize for a in jax.tree.leaves(state))
    return n_state / sum(a.size for a in jax.tree.leaves(params))


def train_formats(task, grid, epochs, seeds, formats, done=None) -> dict[str, Any]:
    """Every format's ``tune`` of ``task``: final validation losses and timings.

    ``done(study)`` is called after each format (to save what finished).
    """
    params = jax.eval_shape(task.init, jax.random.key(0))
    out: dict[str, Any] = {
        "n_params": int(sum(a.size for a in jax.tree.leaves(params))),
        "grid": {k: v.tolist() for k, v in grid.items()},
        "epochs": epochs,
        "seeds": seeds,
        "formats": {},
    }
    for name in formats:
        t0 = time.perf_counter()
        cells = (
            {**grid, "learning_rate": grid["learning_rate"] * (1 + 1e-6)} if name == NOISE else grid
        )
        res = jax_rmsprop.tune(task, cells, epochs, seeds=seeds, options=FORMATS[name])
        val = np.asarray(res.val_loss)  # (*grid, seeds, epochs)
        seconds = time.perf_counter() - t0
        print(f"{task.name} {name}: {seconds:.1f} s", file=sys.stderr, flush=True)
        out["formats"][name] = {
            "bytes_per_param": state_bytes_per_param(FORMATS[name], params),
            "final_val_loss": val[..., -1].tolist(),
            "first_val_loss": val[..., 0].tolist(),
            "seconds": seconds,
        }
        if done is not None:
            done(out)
    return out


def chart(results: dict[str, Any], path: pathlib.Path) -> None:
    """State bytes per parameter against final validation loss, one panel per model.

    Each configuration is a line through the formats (its median over seeds); the dots
    are the single runs.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullLocator

    studies = results["studies"]
    fig, axes = plt.subplots(1, len(studies), figsize=(5.5 * len(studies), 5.0), squeeze=False)
    for ax, (key, study) in zip(axes[0], studies.items()):
        names = [n for n in study["formats"] if n != NOISE]
        x = np.array([study["formats"][n]["bytes_per_param"] for n in names])
        finals = np.stack([np.asarray(study["formats"][n]["final_val_loss"]) for n in names])
        finals = finals.reshape(len(names), -1, study["seeds"])  # (format, config, seed)
        for c, label in enumerate(config_labels(study["grid"])):
            (line,) = ax.plot(x, np.median(finals[:, c], axis=-1), "o-", label=label, lw=1.5)
            jitter = x[:, None] * (
                1 + 0.02 * (np.arange(study["seeds"]) - (study["seeds"] - 1) / 2)
            )
            ax.scatter(jitter, finals[:, c], s=8, color=line.get_color(), alpha=0.4)
        ax.set_xscale("log", base=2)
        if np.nanmax(finals) > 3 * np.nanmin(finals):  # (a narrow range reads better linear)
            ax.set_yscale("log")
            ticks = [t for t in (0.2, 0.3, 0.4, 0.5, 0.7, 1, 1.5, 2, 3, 5) if t < np.nanmax(finals)]
            ax.set_yticks(ticks, [f"{t:g}" for t in ticks])
            ax.yaxis.set_minor_locator(NullLocator())
        ax.set_xticks(x, [f"{n}\n{b:.2f} B" for n, b in zip(names, x)])
        ax.minorticks_off()
        ax.set_xlabel("optimizer state, bytes per parameter")
        ax.set_ylabel("final validation loss")
        ax.set_title(f"{key} ({study['n_params'] / 1e6:.2f}M parameters)")
        ax.grid(alpha=0.3)
        # (below the axes: inside, the box covered the points at the right)
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _save(path, argv, studies) -> None:
    """The figures so far, with their summaries."""
    summaries = {k: summarise(v, v["chance"]) for k, v in studies.items()}
    results = {
        "command": "python -m bench.quant_quality "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "machine": platform.processor() or platform.machine(),
        "studies": studies,
        "summaries": summaries,
    }
    path.write_text(json.dumps(results, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    """Runs the study (``--seeds 1 --epochs 1 --lm-steps 50``: a check of the script)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--formats", default=",".join(FORMATS))
    ap.add_argument("--models", default="digits,lm")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=20, help="digits epochs")
    ap.add_argument("--lm-steps", type=int, default=2000)
    ap.add_argument("--lm-batch", type=int, default=32)
    ap.add_argument("--json", type=pathlib.Path, default=ROOT / "bench" / "quant_quality.json")
    ap.add_argument("--results", action="store_true", help="write the tables into RESULTS.md")
    ap.add_argument("--chart", type=pathlib.Path, default=None)
    ap.add_argument(
        "--update", action="store_true", help="run --formats only, the rest from --json"
    )
    args = ap.parse_args(argv)
    formats = [f for f in args.formats.split(",") if f]  # none, with --update: tables only
    before = json.loads(args.json.read_text())["studies"] if args.update else {}
    if formats[:1] != ["float32"] and not before:
        raise SystemExit("--formats must start with float32 (the reference), or --update")
    studies = dict(before)
    for model in args.models.split(","):
        if model == "digits":
            task = dataclasses.replace(jax_rmsprop.problems.digits((512, 512)), name="digits-wide")
            grid, epochs, chance = DIGITS_GRID, args.epochs, math.log(10)
        else:
            task = char_lm(args.lm_steps, args.lm_batch)
            grid, epochs, chance = LM_GRID, 1, math.log(256)
        key = task.name

        def done(study, key=key, chance=chance):
            if key in before:  # the formats run now replace theirs, in FORMATS' order
                ran = before[key]["formats"] | study["formats"]
                study = study | {"formats": {n: ran[n] for n in FORMATS if n in ran}}
            studies[key] = study | {"chance": chance}
            _save(args.json, argv, studies)

        train_formats(task, grid, epochs, args.seeds, formats, done)
    results = json.loads(args.json.read_text())
    text = markdown(results["studies"], results["summaries"], "quant-quality")
    print(text)
    if args.results:
        write_results(text, ROOT / "bench" / "RESULTS.md", "quant-quality")
    if args.chart is not None:
        chart(results, args.chart)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
