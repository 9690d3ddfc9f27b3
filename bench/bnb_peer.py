"""The peer: bitsandbytes' ``RMSprop8bit`` against ``torch.optim.RMSprop`` on the digits task.

``python -m bench.bnb_peer`` (in a virtualenv with torch, bitsandbytes and scikit-learn;
the package's CI has none of them, and plain ``pytest`` does not collect this module)
trains the same model as ``bench.quant_quality``'s digits study, in PyTorch: the
64-512-512-10 ReLU MLP on scikit-learn's digits (the first 1437 images train, the other
360 validate), 20 epochs, batch 32 (the last batch partial), learning rates 1e-3 and
1e-2 x decays (``alpha``) 0.9, 0.99, 0.999, 5 seeds, ``eps=1e-8``. Seed ``s``
initialises the weights ``N(0, 2/fan_in)`` (``N(0, 1/fan_in)`` for the logits) and the
biases 0, and shuffles every epoch, with ``torch.Generator`` seeded ``s`` (the same for
both optimizers: the ratio of a run is paired), one thread (``--threads``). The metric
is ``bench.quant_quality``'s: final validation loss of the 8-bit run / the float32
run's. ``--step-time N`` also times one ``step()`` of each optimizer on one parameter of
N elements, interleaved.
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import platform
import statistics
import sys
import time

from .quality_tables import markdown, summarise, write_results

ROOT = pathlib.Path(__file__).resolve().parents[1]
LRS, DECAYS = [1e-3, 1e-2], [0.9, 0.99, 0.999]


def _digits():
    import torch
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.data / 16.0, dtype=torch.float32)
    y = torch.tensor(d.target, dtype=torch.int64)
    return (x[:1437], y[:1437]), (x[1437:], y[1437:])


def _model(seed: int, sizes=(64, 512, 512, 10)):
    import torch

    gen = torch.Generator().manual_seed(seed)
    layers: list[torch.nn.Module] = []
    for i, (m, n) in enumerate(zip(sizes[:-1], sizes[1:])):
        lin = torch.nn.Linear(m, n)
        gain = 1.0 if i == len(sizes) - 2 else 2.0  # problems.digits(hidden=(512, 512))'s
        with torch.no_grad():
            lin.weight.copy_(torch.randn(n, m, generator=gen) * math.sqrt(gain / m))
            lin.bias.zero_()
        layers += [lin, torch.nn.ReLU()]
    return torch.nn.Sequential(*layers[:-1])


def _optimizer(kind: str, params, lr: float, decay: float):
    import torch

    if kind == "torch float32":
        return torch.optim.RMSprop(params, lr=lr, alpha=decay, eps=1e-8)
    import bitsandbytes as bnb

    return bnb.optim.RMSprop8bit(params, lr=lr, alpha=decay, eps=1e-8)


def train(kind: str, lr: float, decay: float, seed: int, epochs: int, data) -> float:
    """One training; the final validation loss."""
    import torch

    (x, y), (xv, yv) = data
    model = _model(seed)
    opt = _optimizer(kind, model.parameters(), lr, decay)
    gen = torch.Generator().manual_seed(seed)
    loss_fn = torch.nn.functional.cross_entropy
    for _ in range(epochs):
        perm = torch.randperm(x.shape[0], generator=gen)
        for i in range(0, x.shape[0], 32):
            idx = perm[i : i + 32]
            opt.zero_grad(set_to_none=True)
            loss_fn(model(x[idx]), y[idx]).backward()
            opt.step()
    with torch.no_grad():
        return float(loss_fn(model(xv), yv))


def state_bytes_per_param(kind: str) -> float:
    """The optimizer's state bytes (every tensor in ``opt.state``) per parameter, after a
    step of the digits model."""
    import torch

    model = _model(0)
    opt = _optimizer(kind, model.parameters(), 1e-3, 0.9)
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    opt.step()
    n = sum(p.numel() for p in model.parameters())
    tensors = [v for s in opt.state.values() for v in s.values() if torch.is_tensor(v)]
    return sum(t.numel() * t.element_size() for t in tensors if t.numel() > 1) / n


def quality(epochs: int, seeds: int) -> dict:
    """Both optimizers over the grid and the seeds, in the study's layout."""
    data = _digits()
    study: dict = {
        "n_params": sum(p.numel() for p in _model(0).parameters()),
        "grid": {"learning_rate": LRS, "decay": DECAYS},
        "epochs": epochs,
        "seeds": seeds,
        "formats": {},
    }
    for kind in ("torch float32", "bnb RMSprop8bit"):
        t0 = time.perf_counter()
        final = [
            [[train(kind, lr, d, s, epochs, data) for s in range(seeds)] for d in DECAYS]
            for lr in LRS
        ]
        seconds = time.perf_counter() - t0
        print(f"{kind}: {seconds:.0f} s", file=sys.stderr, flush=True)
        study["formats"][kind] = {
            "bytes_per_param": state_bytes_per_param(kind),
            "final_val_loss": final,
            "seconds": seconds,
        }
    return study


def step_time(n: int, rounds: int = 15, calls: int = 5) -> dict:
    """Median seconds of one ``step()`` of each optimizer on one parameter of ``n`` elements.

    Round-robin: each round times ``calls`` steps of one, then the other (the order
    alternates), so both see the same machine load.
    """
    import torch

    gen = torch.Generator().manual_seed(0)
    opts = {}
    for kind in ("torch float32", "bnb RMSprop8bit"):
        p = torch.nn.Parameter(torch.randn(n, generator=gen))
        p.grad = torch.randn(n, generator=gen) * 1e-2
        opts[kind] = _optimizer(kind, [p], 1e-3, 0.99)
        opts[kind].step()  # the state is made on the first step
    times: dict[str, list[float]] = {k: [] for k in opts}
    for r in range(rounds):
        for kind in list(opts)[:: 1 if r % 2 == 0 else -1]:
            t0 = time.perf_counter()
            for _ in range(calls):
                opts[kind].step()
            times[kind].append((time.perf_counter() - t0) / calls)
    med = {k: statistics.median(v) for k, v in times.items()}
    ratios = [b / t for t, b in zip(times["torch float32"], times["bnb RMSprop8bit"])]
    return {
        "n": n,
        "rounds": rounds,
        "calls": calls,
        "torch_ms": 1e3 * med["torch float32"],
        "bnb_ms": 1e3 * med["bnb RMSprop8bit"],
        "bnb_over_torch": statistics.median(ratios),
        "threads": torch.get_num_threads(),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--step-time", type=int, default=0, metavar="N")
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    ap.add_argument("--json", type=pathlib.Path, default=ROOT / "bench" / "bnb_peer.json")
    ap.add_argument("--results", action="store_true", help="write the table into RESULTS.md")
    args = ap.parse_args(argv)
    import bitsandbytes
    import torch

    torch.set_num_threads(args.threads)
    study = quality(args.epochs, args.seeds)
    summary = summarise(study, math.log(10))
    out = {
        "command": "python -m bench.bnb_peer " + " ".join(sys.argv[1:] if argv is None else argv),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "bitsandbytes": bitsandbytes.__version__,
        "threads": torch.get_num_threads(),
        "studies": {"digits-wide (PyTorch)": study},
        "summaries": {"digits-wide (PyTorch)": summary},
    }
    if args.step_time:
        out["step_time"] = step_time(args.step_time)
    args.json.write_text(json.dumps(out, indent=1) + "\n")
    text = markdown(out["studies"], out["summaries"], "bnb-peer")
    if "step_time" in out:
        st = out["step_time"]
        text = text.replace(
            "\n\n<!-- bnb-peer:end -->",
            f"\n\nOne `step()` on {st['n']:.0e} elements ({st['rounds']} alternating rounds "
            f"of {st['calls']}, {st['threads']} threads): torch.optim.RMSprop "
            f"{st['torch_ms']:.2f} ms, bnb RMSprop8bit {st['bnb_ms']:.2f} ms, "
            f"bnb/torch **{st['bnb_over_torch']:.2f}x** (median of the rounds' ratios)."
            "\n\n<!-- bnb-peer:end -->",
        )
    print(text)
    if args.results:
        write_results(text, ROOT / "bench" / "RESULTS.md", "bnb-peer")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
