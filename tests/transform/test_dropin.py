"""Drop-in behaviour the frameworks' own test suites expect.

Complex parameters (optax's rule, PyTorch's view_as_real), ``update(..., **extra_args)``,
``init`` on abstract leaves, and each ``compat`` constructor accepting exactly what its
framework accepts, refusing what it refuses, by the caller's argument names.
"""

import json
import os
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jax_rmsprop
from jax_rmsprop import compat

from ..helpers import apply_sequence, assert_close_path, complex_grads, complex_x0, optax_rules
from ..transform.test_optax_parity import GRID

GOLDEN = pathlib.Path(__file__).parents[1] / "golden"


# --- complex parameters: optax's rule --------------------------------------------------


def _ids(kw):
    return "-".join(f"{k}={v}" for k, v in kw.items())


# (centered + bias_correction: step 1's variance is 0 +- rounding; only finiteness holds)
@pytest.mark.parametrize(
    "dtype,eps,rtol,grid",
    [(jnp.complex128, 1e-8, 1e-13, GRID), (jnp.complex64, 1e-6, 1e-6, GRID[::3])],
    ids=["complex128", "complex64"],
)
@pytest.mark.slow
def test_complex_equal_to_optax(dtype, eps, rtol, grid):
    grads, x0 = complex_grads(dtype), complex_x0(dtype)
    for kw in grid:
        ours = apply_sequence(jax_rmsprop.rmsprop(0.01, 0.9, eps, **kw), x0, grads)
        with optax_rules():
            ref = apply_sequence(optax.rmsprop(0.01, 0.9, eps, **kw), x0, grads)
        assert ours.dtype == np.dtype(dtype)
        if kw["centered"] and kw["bias_correction"]:
            assert np.isfinite(ours).all()
        else:
            assert_close_path(ours, ref, rtol=rtol, err_msg=_ids(kw))


def test_complex_first_step_is_optaxs():
    """The issue's example: complex64 x = 1+1j, g = 1+1j, optax gives 0.01118+0.01118j."""
    x = jnp.array([1 + 1j], jnp.complex64)
    g = jnp.array([1 + 1j], jnp.complex64)
    for tx in (jax_rmsprop.rmsprop(0.01, eps_in_sqrt=True), optax.rmsprop(0.01)):
        with optax_rules():  # (ours is checked under strict promotion everywhere else)
            u, _ = tx.update(g, tx.init(x), x)
        # nu = 0.1 |g|^2 = 0.2, u = -0.01 g / sqrt(0.2)
        np.testing.assert_allclose(u, -0.01 * (1 + 1j) / np.sqrt(0.2 + 1e-8), rtol=1e-6)


@pytest.mark.parametrize("centered", [False, True])
def test_complex_state_dtypes(centered):
    tx = jax_rmsprop.rmsprop(0.1, centered=centered, momentum=0.9)
    state = tx.init({"c": jnp.ones(3, jnp.complex64), "r": jnp.ones(2, jnp.float32)})
    assert state.nu["c"].dtype == jnp.float32  # real: |g|^2
    assert state.trace["c"].dtype == jnp.complex64
    if centered:
        assert state.mu["c"].dtype == jnp.complex64
    wide = jax_rmsprop.rmsprop(0.1, state_dtype=jnp.float64).init(jnp.ones(2, jnp.complex64))
    assert wide.nu.dtype == jnp.float64


@pytest.mark.parametrize("make", ["optax_parabola", "optax_rosenbrock"])
@pytest.mark.parametrize("dtype", [jnp.complex64, jnp.complex128])
def test_complex_convergence_like_optaxs_tests(make, dtype):
    """optax's alias tests: the complex parabola and Rosenbrock, converging with rmsprop."""
    if make == "optax_parabola":
        target = jnp.array([1 + 2j, 3 - 1j], dtype)

        def loss(x):
            d = x - target
            return jnp.sum(jnp.real(jnp.conj(d) * d))

        x0, steps, lr = jnp.zeros(2, dtype), 2000, 1e-2
    else:
        a, b = 1 - 1j, 10.0

        def loss(x):
            re = lambda z: jnp.real(jnp.conj(z) * z)  # noqa: E731
            return re(a - x[0]) + b * re(x[1] - x[0] ** 2)

        target = jnp.array([a, a**2], dtype)
        x0, steps, lr = jnp.zeros(2, dtype), 10000, 1e-3
    # JAX's gradient of a real loss of complex z is the conjugate of the ascent direction.
    grad = lambda x: jnp.conj(jax.grad(loss)(x))  # noqa: E731
    for centered in (False, True):
        x = _descend(jax_rmsprop.rmsprop(lr, decay=0.9, centered=centered), grad, x0, steps)
        np.testing.assert_allclose(x, target, atol=1e-2 if make == "optax_parabola" else 5e-2)


def _descend(tx, grad, x0, steps):
    def step(carry, _):
        x, s = carry
        u, s = tx.update(grad(x), s, x)
        return (optax.apply_updates(x, u), s), None

    return jax.lax.scan(step, (x0, tx.init(x0)), length=steps)[0][0]


def test_torch_rmsprop_on_complex_params_follows_recorded_pytorch():
    data = np.load(GOLDEN / "torch_complex_rmsprop.npz")
    for key, cfg in json.loads(str(data["configs"])).items():
        for dtype, tol in (("complex128", 1e-12), ("complex64", 2e-5)):
            grads, path = data[f"{key}/{dtype}/grads"], data[f"{key}/{dtype}/path"]
            ours = apply_sequence(compat.torch_rmsprop(**cfg), path[0], grads)
            assert ours.dtype == np.dtype(dtype)
            assert_close_path(ours, path, rtol=tol, err_msg=f"{data['version']} {key} {dtype}")


def test_torch_complex_state_is_a_pair_of_real_moments():
    # PyTorch's square_avg of a complex param is complex: each part is one real moment.
    tx = compat.torch_rmsprop(lr=0.1, alpha=0.5)
    x = jnp.array([1 + 2j], jnp.complex128)
    _, state = tx.update(jnp.array([3 - 4j]), tx.init(x), x)
    np.testing.assert_array_equal(state.nu, [0.5 * 9 + 0.5j * 16])


@pytest.mark.parametrize("ctor", [compat.keras_rmsprop, compat.tf1_rmsprop], ids=["keras", "tf1"])
def test_keras_and_tf1_follow_optaxs_complex_rule(ctor):
    # Documented: |g|^2, not the complex square the frameworks compute.
    x = jnp.array([1 + 1j], jnp.complex128)
    tx = ctor(0.01) if ctor is compat.tf1_rmsprop else ctor(learning_rate=0.01)
    state = tx.init(x)
    _, state = tx.update(jnp.array([1j]), state, x)
    assert state.nu.dtype == jnp.float64
    init = 1.0 if ctor is compat.tf1_rmsprop else 0.0
    np.testing.assert_allclose(state.nu, 0.9 * init + 0.1 * 1.0)


@pytest.mark.parametrize(
    "grad,param,match",
    [
        (jnp.ones(2, jnp.complex64), jnp.ones(2, jnp.float32), r"\['w'\] is complex .* is real"),
        (jnp.ones(2, jnp.float32), jnp.ones(2, jnp.complex64), r"\['w'\] is real .* is complex"),
    ],
)
def test_complex_real_mismatch_is_refused(grad, param, match):
    tx = jax_rmsprop.rmsprop(0.1)
    params = {"w": param}
    state = tx.init(params)
    with pytest.raises(ValueError, match=match):
        tx.update({"w": grad}, state, params)
    # without params, a centered or momentum state still tells
    tx = jax_rmsprop.rmsprop(0.1, momentum=0.5)
    with pytest.raises(ValueError, match=match):
        tx.update({"w": grad}, tx.init(params))


# --- extra arguments, abstract init ------------------------------------------------------

ALL_CTORS = {
    "rmsprop": lambda: jax_rmsprop.rmsprop(0.1, centered=True, momentum=0.9),
    "scale_by_rms": lambda: jax_rmsprop.scale_by_rms(),
    "torch": lambda: compat.torch_rmsprop(momentum=0.5, weight_decay=0.1),
    "keras": lambda: compat.keras_rmsprop(weight_decay=0.1),
    "tf1": lambda: compat.tf1_rmsprop(0.1, centered=True),
}


@pytest.mark.parametrize("name", ALL_CTORS)
def test_update_accepts_and_ignores_extra_args(name):
    tx = ALL_CTORS[name]()
    assert isinstance(tx, optax.GradientTransformationExtraArgs)
    params = {"w": jnp.ones((2, 3))}
    grads = {"w": jnp.full((2, 3), 0.5)}
    state = tx.init(params)
    plain = tx.update(grads, state, params)
    extra = tx.update(grads, state, params, value=jnp.float32(1.0), grad=grads, key=None)
    jax.tree.map(np.testing.assert_array_equal, extra, plain)
    # and through optax's own wrappers that pass extra args down a chain
    chained = optax.chain(optax.clip_by_global_norm(1.0), tx)
    u, _ = chained.update(grads, chained.init(params), params, value=1.0)
    assert u["w"].shape == (2, 3)


@pytest.mark.parametrize("name", ALL_CTORS)
def test_init_on_abstract_leaves_returns_abstract_state(name):
    tx = ALL_CTORS[name]()
    params = {"w": jnp.ones((4, 5), jnp.float32), "c": jnp.ones(3, jnp.complex64)}
    abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), params)
    got = tx.init(abstract)
    want = tx.init(params)
    assert all(isinstance(x, jax.ShapeDtypeStruct) for x in jax.tree.leaves(got))
    shapes = lambda t: jax.tree.map(lambda a: (a.shape, jnp.dtype(a.dtype)), t)  # noqa: E731
    assert shapes(got) == shapes(want)


# --- compat arguments: the framework's names and ranges ----------------------------------

# (kwargs, accepted?, the argument named in the error)
TORCH_CASES = [
    (dict(lr=0.0), True, None),
    (dict(lr=float("inf")), True, None),
    (dict(lr=-1.0), False, "lr"),
    (dict(alpha=1.5), True, None),
    (dict(alpha=0.0), True, None),
    (dict(alpha=-0.1), False, "alpha"),
    (dict(alpha=float("nan")), False, "alpha"),
    (dict(eps=0.0), True, None),
    (dict(eps=-1.0), False, "eps"),
    (dict(momentum=1.0), True, None),
    (dict(momentum=-0.1), False, "momentum"),
    (dict(weight_decay=0.0), True, None),
    (dict(weight_decay=-1.0), False, "weight_decay"),
]
KERAS_CASES = [
    (dict(learning_rate=-1.0), False, "learning_rate"),
    (dict(rho=0.0), True, None),
    (dict(rho=1.0), True, None),
    (dict(rho=2.0), False, "rho"),
    (dict(rho=-0.5), False, "rho"),
    (dict(momentum=1.0), True, None),
    (dict(momentum=1.5), False, "momentum"),
    (dict(momentum=-0.5), False, "momentum"),
    (dict(epsilon=1e-30), True, None),
    (dict(epsilon=0.0), False, "epsilon"),
    (dict(epsilon=-1.0), False, "epsilon"),
    (dict(weight_decay=float("nan")), False, "weight_decay"),
]
TF1_CASES = [
    (dict(learning_rate=-1.0), False, "learning_rate"),
    (dict(learning_rate=0.1, decay=1.0), True, None),
    (dict(learning_rate=0.1, decay=1.5), False, "decay"),
    (dict(learning_rate=0.1, momentum=1.0), True, None),
    (dict(learning_rate=0.1, momentum=-0.5), False, "momentum"),
    (dict(learning_rate=0.1, epsilon=0.0), True, None),
    (dict(learning_rate=0.1, epsilon=-1.0), False, "epsilon"),
]
CASES = [
    pytest.param(ctor, kw, ok, name, id=f"{ctor.__name__}-{next(iter(kw.items()))}")
    for ctor, table in (
        (compat.torch_rmsprop, TORCH_CASES),
        (compat.keras_rmsprop, KERAS_CASES),
        (compat.tf1_rmsprop, TF1_CASES),
    )
    for kw, ok, name in table
]


@pytest.mark.parametrize("ctor,kw,ok,name", CASES)
def test_compat_accepts_and_refuses_by_the_callers_name(ctor, kw, ok, name):
    if ok:
        tx = ctor(**kw)
        x = jnp.linspace(-1.0, 1.0, 4)
        u, _ = tx.update(jnp.full(4, 0.5), tx.init(x), x)
        assert u.shape == (4,)
    else:
        with pytest.raises(ValueError, match=rf"`{ctor.__name__}\({name}=\.\.\.\)`"):
            ctor(**kw)


@pytest.mark.parametrize("kw,ok,name", TORCH_CASES)
def test_torch_cases_are_pytorchs_own_decisions(kw, ok, name):
    torch = pytest.importorskip("torch", reason="PyTorch not installed: compared in golden data")
    p = torch.nn.Parameter(torch.zeros(2))
    try:
        torch.optim.RMSprop([p], **kw)
        torch_ok = True
    except ValueError:
        torch_ok = False
    assert torch_ok == ok


@pytest.mark.parametrize("kw,ok,name", [c for c in KERAS_CASES if c[1]])
def test_keras_accepted_edges_match_keras(kw, ok, name):
    """Keras checks nothing at construction; where we accept an edge value, we match it."""
    os.environ.setdefault("KERAS_BACKEND", "jax")
    keras = pytest.importorskip("keras", reason="Keras not installed")
    if keras.backend.backend() != "jax":
        pytest.skip(f"Keras runs on {keras.backend.backend()}, not JAX")
    x0 = np.linspace(-1.0, 1.0, 4).astype(np.float32)
    grads = np.random.default_rng(5).normal(size=(6, 4)).astype(np.float32)
    v = keras.Variable(x0)
    opt = keras.optimizers.RMSprop(**kw)
    path = [x0]
    for g in grads:
        opt.apply([keras.ops.convert_to_tensor(g)], [v])
        path.append(np.asarray(v.value).copy())
    ours = apply_sequence(compat.keras_rmsprop(**kw), x0, grads)
    assert_close_path(ours, np.stack(path), rtol=2e-5)


def test_scale_by_rms_names_its_argument():
    with pytest.raises(ValueError, match=r"`scale_by_rms\(decay=\.\.\.\)`"):
        jax_rmsprop.scale_by_rms(decay=1.01)
