"""Regenerates tests/golden/{torch,torch_complex,keras}_rmsprop.npz from the real frameworks.

Usage: pip install torch keras && python scripts/make_goldens.py
Each config feeds a fixed, seeded gradient sequence (no feedback through the
parameters except weight decay, which each framework applies itself) and records
the parameter path, in float64 and float32 (PyTorch's complex configs: complex128 and
complex64, with complex gradients). Keras runs on its JAX backend.
"""

import json
import os
import pathlib

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("JAX_ENABLE_X64", "1")  # else Keras silently runs float64 in float32
import numpy as np  # noqa: E402

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "golden"
STEPS, SIZE = 25, 7

TORCH_CONFIGS = {
    "default": dict(lr=1e-2),
    "alpha09_eps": dict(lr=0.05, alpha=0.9, eps=1e-3),
    "centered": dict(lr=1e-2, centered=True),
    "momentum": dict(lr=1e-2, momentum=0.9),
    "centered_momentum": dict(lr=3e-3, alpha=0.95, momentum=0.5, centered=True),
    "weight_decay": dict(lr=1e-2, weight_decay=0.1),
    "wd_momentum": dict(lr=1e-2, weight_decay=0.05, momentum=0.8),
    "maximize": dict(lr=1e-2, maximize=True, momentum=0.3),
}
# PyTorch on complex parameters (it treats each as its real and imaginary parts).
TORCH_COMPLEX_CONFIGS = {
    "default": dict(lr=1e-2),
    "centered_momentum": dict(lr=3e-3, alpha=0.95, momentum=0.5, centered=True),
    "wd_momentum": dict(lr=1e-2, weight_decay=0.05, momentum=0.8),
    "maximize": dict(lr=1e-2, maximize=True, alpha=0.9, eps=1e-3),
}
KERAS_CONFIGS = {
    "default": dict(),
    "rho_eps": dict(learning_rate=0.05, rho=0.8, epsilon=1e-3),
    "centered": dict(learning_rate=1e-2, centered=True),
    "momentum": dict(learning_rate=1e-2, momentum=0.9),
    "centered_momentum": dict(learning_rate=3e-3, rho=0.95, momentum=0.5, centered=True),
    "weight_decay": dict(learning_rate=1e-2, weight_decay=0.1),
    "wd_momentum": dict(learning_rate=1e-2, weight_decay=0.05, momentum=0.8),
}


def problem(name: str, dtype):
    seed = sum(map(ord, name))
    rng = np.random.default_rng(seed)
    cplx = np.issubdtype(dtype, np.complexfloating)

    def draw(*shape):
        return rng.normal(size=shape) + (1j * rng.normal(size=shape) if cplx else 0)

    x0 = draw(SIZE).astype(dtype)
    # Mixed magnitudes, sign changes and an exact zero: the cases where conventions differ.
    scales = np.array([1e-3, 1e-1, 1.0, 10.0, 1.0, 1e2, 1.0])
    grads = (draw(STEPS, SIZE) * scales).astype(dtype)
    grads[::5, 4] = 0.0
    if cplx:
        grads[1::5, 2] = grads[1::5, 2].real  # a zero imaginary part beside a nonzero real one
    return x0, grads


def run_torch(cfg, dtype):
    import torch

    x0, grads = problem(json.dumps(cfg), dtype)
    p = torch.nn.Parameter(torch.tensor(x0))
    opt = torch.optim.RMSprop([p], foreach=False, **cfg)
    path = [p.detach().numpy().copy()]
    for g in grads:
        p.grad = torch.tensor(g)
        opt.step()
        path.append(p.detach().numpy().copy())
    return x0, grads, np.stack(path)


def run_keras(cfg, dtype):
    import keras

    x0, grads = problem(json.dumps(cfg), dtype)
    v = keras.Variable(x0, dtype=np.dtype(dtype).name)
    opt = keras.optimizers.RMSprop(**cfg)
    path = [np.asarray(v.value).copy()]
    for g in grads:
        opt.apply([keras.ops.convert_to_tensor(g, dtype=np.dtype(dtype).name)], [v])
        path.append(np.asarray(v.value).copy())
    return x0, grads, np.stack(path)


def record(name, configs, runner, version, dtypes=(np.float64, np.float32)):
    arrays = {}
    for key, cfg in configs.items():
        for dtype in dtypes:
            x0, grads, path = runner(cfg, dtype)
            tag = f"{key}/{np.dtype(dtype).name}"
            arrays[f"{tag}/grads"], arrays[f"{tag}/path"] = grads, path
    arrays["configs"] = np.array(json.dumps(configs))
    arrays["version"] = np.array(version)
    np.savez_compressed(OUT / f"{name}_rmsprop.npz", **arrays)
    print(f"wrote {OUT / f'{name}_rmsprop.npz'} ({len(configs)} configs, {version})")


if __name__ == "__main__":
    import keras
    import torch

    OUT.mkdir(parents=True, exist_ok=True)
    record("torch", TORCH_CONFIGS, run_torch, f"torch {torch.__version__}")
    record(
        "torch_complex",
        TORCH_COMPLEX_CONFIGS,
        run_torch,
        f"torch {torch.__version__}",
        dtypes=(np.complex128, np.complex64),
    )
    record("keras", KERAS_CONFIGS, run_keras, f"keras {keras.__version__} (jax backend)")
