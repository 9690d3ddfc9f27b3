"""Run in a subprocess by test_sharding.py: 8 simulated host devices, facts printed as JSON.

XLA_FLAGS must be set before JAX is imported, which the parent test process has already done.
"""

import itertools
import json
import os
import re

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from jax.sharding import AxisType, NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

import jax_rmsprop  # noqa: E402
from jax_rmsprop import checkpoint  # noqa: E402

# jax.set_mesh since jax 0.7; jax.sharding.use_mesh before (pyproject allows jax 0.5.3)
set_mesh = getattr(jax, "set_mesh", None) or jax.sharding.use_mesh
COLLECTIVES = re.compile(r"all-gather|all-reduce|collective-permute|all-to-all|reduce-scatter")
facts = {"devices": jax.device_count()}
CONFIGS = {
    "plain": dict(),
    "centered_momentum": dict(centered=True, momentum=0.9, nesterov=True),
    "bias_wd_bf16state": dict(bias_correction=True, weight_decay=0.1, state_dtype=jnp.float32),
}

for mode, axis_type in (("auto", AxisType.Auto), ("explicit", AxisType.Explicit)):
    mesh = jax.make_mesh((4, 2), ("data", "model"), axis_types=(axis_type,) * 2)
    specs = {"w": P("data", "model"), "emb": P(None, "model"), "b": P("data"), "scale": P()}
    shapes = {"w": (16, 8), "emb": (6, 8), "b": (16,), "scale": (8,)}
    params = {
        k: jax.device_put(jnp.ones(shapes[k], jnp.float32), NamedSharding(mesh, specs[k]))
        for k in specs
    }
    with set_mesh(mesh):
        for name, kw in CONFIGS.items():
            tx = jax_rmsprop.rmsprop(0.01, **kw)
            state = jax.jit(tx.init)(params)
            leaves = {"nu": state.nu, "mu": state.mu, "trace": state.trace}
            same = {
                f"{field}.{k}": leaf[k].sharding.is_equivalent_to(params[k].sharding, leaf[k].ndim)
                for field, leaf in leaves.items()
                if leaf is not None
                for k in leaf
            }
            facts[f"{mode}/{name}/init_same_sharding"] = same

            def step(p, s, g, tx=tx):
                u, s = tx.update(g, s, p)
                return optax.apply_updates(p, u), s

            hlo = (
                jax.jit(step, donate_argnums=(0, 1))
                .lower(params, state, params)
                .compile()
                .as_text()
            )
            facts[f"{mode}/{name}/collectives"] = sorted(set(COLLECTIVES.findall(hlo)))
            new_p, new_s = jax.jit(step)(params, state, params)
            facts[f"{mode}/{name}/step_keeps_sharding"] = all(
                new_s.nu[k].sharding.is_equivalent_to(params[k].sharding, params[k].ndim)
                and new_p[k].sharding.is_equivalent_to(params[k].sharding, params[k].ndim)
                for k in params
            )
            # a checkpoint restored into a sharded template takes the template's shardings
            path = os.path.join(os.environ["CKPT_DIR"], f"{mode}-{name}.npz")
            checkpoint.save(path, new_s)
            back = checkpoint.restore(path, state)
            facts[f"{mode}/{name}/restore_keeps_sharding"] = all(
                a.sharding.is_equivalent_to(b.sharding, a.ndim)
                for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(state))
            )
            facts[f"{mode}/{name}/restore_equal"] = all(
                bool(np.array_equal(np.asarray(a), np.asarray(b)))
                for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(new_s))
            )
        ostate = jax.jit(optax.rmsprop(0.01).init)(params)[0]
        facts[f"{mode}/optax_init_same_sharding"] = all(
            ostate.nu[k].sharding.is_equivalent_to(params[k].sharding, params[k].ndim)
            for k in params
        )

# 8-bit state (issue 31): each shard's blocks its own. Last axes of 2048 split in 2 shards
# of 1024 (4 blocks of 256 each): the block exponents need no other shard's values.
# 4-bit state too: two codes a byte, both of one block (so of one shard).
FORMATS = ((8, "quantized"), (4, "quantized4"))
for (bits, key), (mode, axis_type) in itertools.product(
    FORMATS, (("auto", AxisType.Auto), ("explicit", AxisType.Explicit))
):
    mesh = jax.make_mesh((4, 2), ("data", "model"), axis_types=(axis_type,) * 2)
    specs = {"w": P("data", "model"), "emb": P(None, "model")}
    shapes = {"w": (16, 2048), "emb": (6, 2048)}
    rng = np.random.default_rng(0)
    host = {k: rng.standard_normal(shapes[k]).astype(np.float32) for k in specs}
    params = {k: jax.device_put(host[k], NamedSharding(mesh, specs[k])) for k in specs}
    with set_mesh(mesh):
        tx = jax_rmsprop.rmsprop(0.01, momentum=0.9, state_bits=bits)
        state = jax.jit(tx.init)(params)

        def qstep(p, s, g, tx=tx):
            u, s = tx.update(g, s, p)
            return optax.apply_updates(p, u), s

        hlo = jax.jit(qstep, donate_argnums=(0, 1)).lower(params, state, params).compile()
        facts[f"{mode}/{key}/collectives"] = sorted(set(COLLECTIVES.findall(hlo.as_text())))
        # each collective's largest operand or result, in elements (the zero blocks' row
        # maximum where the last axis is sharded: an integer per row of the shard)
        sizes = [
            max((int(np.prod([int(d) for d in dims.split(",") if d] or [1]))
                 for dims in re.findall(r"\w+\[([\d,]*)\]", line)), default=0)
            for line in hlo.as_text().splitlines()
            if COLLECTIVES.search(line) and "=" in line
        ]  # fmt: skip
        facts[f"{mode}/{key}/largest_collective"] = max(sizes, default=0)
        new_p, new_s = jax.jit(qstep)(params, state, params)
        new_p, new_s = jax.jit(qstep)(new_p, new_s, params)
        facts[f"{mode}/{key}/sharded_as_params"] = all(
            getattr(s, f)[k].codes.sharding.is_equivalent_to(params[k].sharding, 2)
            and getattr(s, f)[k].exponents.sharding.is_equivalent_to(params[k].sharding, 2)
            for s in (state, new_s)  # init's and the step's
            for f in ("nu", "trace")
            for k in params
        )
    # the same two compiled steps on one device: the same numbers, bit for bit
    g1 = {k: jax.device_put(v, jax.devices()[0]) for k, v in host.items()}
    p1, s1 = jax.jit(qstep)(g1, tx.init(g1), g1)
    p1, s1 = jax.jit(qstep)(p1, s1, g1)
    facts[f"{mode}/{key}/equal_to_one_device"] = all(
        bool(np.array_equal(np.asarray(a), np.asarray(b)))
        for a, b in zip(jax.tree.leaves((new_p, new_s)), jax.tree.leaves((p1, s1)))
    )

# The sweep's configuration axis sharded over a 4 x 2 mesh.
mesh = jax.make_mesh((4, 2), ("a", "b"), axis_types=(AxisType.Auto,) * 2)
grid = {"learning_rate": np.logspace(-3, 0, 10), "decay": np.linspace(0.5, 0.99, 5)}
p = jax_rmsprop.problems.coupled()
sharded = jax_rmsprop.sweep(p, grid, 100, mesh=mesh)
single = jax_rmsprop.sweep(p, grid, 100)
calm = grid["learning_rate"] <= 0.1  # larger steps oscillate chaotically: 1-ulp differences grow
facts["sweep/max_abs_diff"] = float(np.max(np.abs(sharded.final_loss - single.final_loss)[calm]))
facts["sweep/shape"] = list(sharded.final_loss.shape)

from jax_rmsprop import _sweep  # noqa: E402

values = tuple(
    jax.device_put(jnp.asarray(np.linspace(0.01, 0.1, 56)), NamedSharding(mesh, P(("a", "b"))))
    for _ in range(2)
)
carry = _sweep._start_all(
    p.loss,
    p.x0,
    values,
    optimizer=jax_rmsprop.rmsprop,
    names=("learning_rate", "decay"),
    options=(),
    mesh=mesh,
)
facts["sweep/carry_devices"] = len(carry.x.sharding.device_set)
facts["sweep/carry_shard_shape"] = list(carry.x.sharding.shard_shape(carry.x.shape))
print("FACTS " + json.dumps(facts))
