import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax_rmsprop import problems


@pytest.mark.parametrize(
    "make,x0,minimizer",
    [
        (problems.sphere, [5.0, 4.0], [0.0, 0.0]),
        (problems.elongated, [1.5, 1.5], [0.0, 0.0]),
        (problems.coupled, [1.0, 0.0], [2.0, -1.0]),
        (problems.cubic, [-1.0], [-1 / np.sqrt(3)]),
        (problems.rosenbrock, [-1.2, 1.0], [1.0, 1.0]),
    ],
)
def test_documented_problems(make, x0, minimizer):
    p = make()
    np.testing.assert_array_equal(p.x0, x0)
    np.testing.assert_allclose(p.minimizer, minimizer, rtol=1e-15)
    np.testing.assert_allclose(jax.grad(p.loss)(p.minimizer), 0.0, atol=1e-12)
    hess = np.linalg.eigvalsh(np.asarray(jax.hessian(p.loss)(p.minimizer)).reshape(len(x0), -1))
    assert (hess > 0).all(), "a (local) minimum"
    assert p.min_loss == pytest.approx(float(p.loss(p.minimizer)))


def test_seed_formulas():
    x = jnp.array([0.3, -0.7])
    assert problems.coupled().loss(x) == pytest.approx(2 * 0.09 + 2 * 0.3 * -0.7 + 2 * 0.49 - 1.8)
    assert problems.elongated().loss(x) == pytest.approx(0.09 + 10 * 0.49)
    assert problems.cubic().loss(jnp.array([0.3])) == pytest.approx(0.3 - 0.027)
    assert problems.coupled().min_loss == pytest.approx(-6.0)


@pytest.mark.parametrize("dim,condition", [(1, 1.0), (5, 10.0), (40, 1e4)])
def test_quadratic_has_the_requested_spectrum(dim, condition):
    p = problems.quadratic(dim, condition, seed=3)
    hess = np.asarray(jax.hessian(p.loss)(jnp.zeros(dim)))
    np.testing.assert_allclose(hess, hess.T, atol=1e-10)
    eig = np.linalg.eigvalsh(hess)
    np.testing.assert_allclose(eig, np.logspace(0, np.log10(condition), dim), rtol=1e-9)
    assert not np.allclose(hess, np.diag(np.diag(hess))) or dim == 1, "rotated"
    np.testing.assert_array_equal(problems.quadratic(dim, condition, seed=3).x0, p.x0)


def test_quadratic_scales_to_a_million_dimensions():
    p = problems.quadratic(1_000_000, 100.0)
    g = jax.jit(jax.grad(p.loss))(p.x0)
    assert g.shape == (1_000_000,) and np.isfinite(np.asarray(g)).all()


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"unknown problem 'nope'; known problems: coupled"):
        problems.get("nope")
    with pytest.raises(ValueError, match=r"`quadratic\(condition=...\)`"):
        problems.quadratic(3, 0.5)
    with pytest.raises(ValueError, match=r"`rosenbrock\(dim=...\)`"):
        problems.rosenbrock(1)


def test_tasks_name_the_package_they_miss(monkeypatch):
    """Without Flax, ``digits_nnx`` says what to install (before any training), and the
    demo skips its digits section with that sentence instead of a traceback."""
    import importlib.util

    from jax_rmsprop import _demo

    find_spec = importlib.util.find_spec
    no_flax = lambda name, *a: None if name == "flax" else find_spec(name, *a)  # noqa: E731
    monkeypatch.setattr(importlib.util, "find_spec", no_flax)
    with pytest.raises(ImportError, match=r"needs flax: pip install 'jax-rmsprop\[plot\]'"):
        problems.digits_nnx()
    lines = []
    assert _demo._seed_002_digits(pathlib.Path("unused"), lines.append) == {}
    assert lines == [
        "\n== Digits classifier skipped: problems.digits_nnx needs flax: "
        "pip install 'jax-rmsprop[plot]'"
    ]


def test_digits_with_a_tuple_of_widths_is_a_deeper_relu_mlp():
    pytest.importorskip("sklearn")
    task = problems.digits((512, 512))
    params = task.init(jax.random.key(3))
    assert [layer["w"].shape for layer in params] == [(64, 512), (512, 512), (512, 10)]
    for layer, gain in zip(params, [2.0, 2.0, 1.0]):  # He, He, LeCun
        w = np.asarray(layer["w"], np.float64)
        assert layer["w"].dtype == jnp.float32 and not np.asarray(layer["b"]).any()
        assert np.std(w) == pytest.approx(np.sqrt(gain / w.shape[0]), rel=0.05)
    x, y = (a[:50] for a in task.data)
    h = np.asarray(x, np.float64)
    for layer in params:
        z = h @ np.asarray(layer["w"], np.float64) + np.asarray(layer["b"], np.float64)
        h = np.maximum(z, 0.0)
    logp = z - z.max(1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    expected = -logp[np.arange(50), np.asarray(y)].mean()
    assert float(task.loss(params, (x, y))) == pytest.approx(expected, rel=1e-5)
    assert task.validation[0].shape == (360, 64) and task.batch_size == 32
