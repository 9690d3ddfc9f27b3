"""fit's waits for the device: how often a call stops until the device has computed.

On a GPU each wait costs a round trip (the fixed cost of a one-epoch call), so they are
counted (``_host.fetch``, the library's one way to the host) and pinned: one per call
for the epochs' logs, one per later epoch for the previous epoch's finiteness or for
logs the host acts on (early stopping, ``verbose``, ``callback``), one for data not
checked before. Every other read of a device array during ``fit`` is a defect, caught
by counting the array's own host copies outside ``fetch``.
"""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jax_rmsprop
from jax_rmsprop import _host


def _loss(params, batch):
    x, y = batch
    err = x @ params["w"] + params["b"] - y
    return jnp.mean(err**2), {"mae": jnp.mean(jnp.abs(err))}


def _problem(n=96):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 4))
    y = x @ rng.normal(size=4)
    return {"w": np.zeros(4), "b": np.zeros(())}, (jnp.asarray(x), jnp.asarray(y))


@pytest.fixture
def stray(monkeypatch):
    """The host copies of JAX arrays made outside ``_host.fetch`` (a list, appended to)."""
    array_impl = getattr(getattr(jax._src, "array", None), "ArrayImpl", None)
    real = getattr(array_impl, "_value", None)
    if not isinstance(real, property):
        pytest.skip("this JAX's arrays copy to the host another way")
    seen: list[str] = []

    def value(self):
        frame = sys._getframe(1)
        while frame is not None and not (
            frame.f_code.co_name == "fetch" and frame.f_code.co_filename == _host.__file__
        ):
            frame = frame.f_back
        if frame is None:  # named by the first caller outside JAX
            caller = sys._getframe(1)
            while caller.f_back is not None and "/jax/" in caller.f_code.co_filename:
                caller = caller.f_back
            seen.append(f"{caller.f_code.co_filename}:{caller.f_lineno}")
        return real.fget(self)

    monkeypatch.setattr(array_impl, "_value", property(value))
    return seen


def _waits(**kw):
    params, data = kw.pop("problem", _problem())
    before = _host.waits()
    hist = jax_rmsprop.fit(_loss, params, optax.sgd(0.01), data, batch_size=32, **kw)
    return _host.waits() - before, hist


@pytest.mark.parametrize("validation", [False, True])
def test_a_one_epoch_call_waits_once_for_its_logs(stray, validation):
    problem = _problem()
    val = problem[1] if validation else None
    first, _ = _waits(problem=problem, epochs=1, validation=val)
    again, hist = _waits(problem=problem, epochs=1, validation=val)
    assert (first, again) == (2, 1)  # the data's finiteness (one wait), then the logs
    assert stray == []
    assert set(hist.history) == {"loss", "mae"} | ({"val_loss", "val_mae"} if validation else set())
    assert np.isfinite(hist.history["mae"]).all() and hist.loss.dtype == np.float64


@pytest.mark.parametrize(
    ("kw", "want"),
    [
        ({}, 4),  # epochs 1..3 check the previous one's finiteness; the end fetches the logs
        ({"terminate_on_nan": False}, 1),
        ({"patience": 5, "monitor": "loss"}, 5),  # each epoch's logs decide, and the end
        ({"callback": lambda *a: None}, 5),
    ],
)
def test_a_longer_call_waits_at_most_once_per_epoch(stray, kw, want):
    problem = _problem()
    _waits(problem=problem, epochs=1)  # (the data checked)
    got, hist = _waits(problem=problem, epochs=4, **kw)
    assert got == want and len(hist.loss) == 4
    assert stray == []


def test_the_waits_count_host_copies_elsewhere(stray):
    """The fixture sees a read of a device array outside ``fetch`` (it can fail)."""
    float(jnp.ones(()) + 1)
    assert len(stray) == 1 and stray[0].startswith(__file__)
