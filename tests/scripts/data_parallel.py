"""Run in a subprocess by test_data_parallel.py: fit over 8 simulated host devices.

Usage: python data_parallel.py  (XLA_FLAGS is set here, before JAX is imported).
Prints ``FACTS {json}``: the data-parallel fits' differences from one-device fits, and
what the compiled epoch does across devices.
"""

import json
import os
import re

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"

import jax  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

import jax_rmsprop  # noqa: E402
from jax_rmsprop import _fit  # noqa: E402

EPOCHS = 3
facts = {"devices": jax.device_count()}
task = jax_rmsprop.problems.digits(hidden=32)
# what the bound on the differences is derived from (test_data_parallel.bound)
facts["examples"] = int(task.data[0].shape[0])
facts["epochs"] = EPOCHS
p0 = task.init(jax.random.key(0))
tx = jax_rmsprop.rmsprop(3e-3, momentum=0.9, centered=True)
mesh = jax.make_mesh((8,), ("data",))  # Explicit axes (make_mesh's default)
mesh2d = jax.sharding.Mesh(np.array(jax.devices()).reshape(4, 2), ("a", "b"))  # Auto axes


def fit(params, batch_size, loss=task.loss, **kw):
    return jax_rmsprop.fit(
        loss,
        params,
        tx,
        task.data,
        epochs=EPOCHS,
        batch_size=batch_size,
        key=jax.random.key(1),
        validation=task.validation,
        **kw,
    )


def rel(a, b):
    a, b = jax.tree.leaves(a), jax.tree.leaves(b)
    return max(
        float(np.max(np.abs(np.asarray(x) - np.asarray(y))) / (np.max(np.abs(y)) + 1e-30))
        for x, y in zip(a, b)
    )


# batch 32 (4 per device; 1437 = 44 * 32 + 29: the last batch does not divide by 8) and 40
for name, m, bs in (("8", mesh, 32), ("8-batch40", mesh, 40), ("4x2", mesh2d, 32)):
    one, dp = fit(p0, bs), fit(p0, bs, mesh=m)
    facts[name] = {
        "params": rel(dp.params, one.params),
        "opt_state": rel(dp.opt_state, one.opt_state),
        "loss": rel(dp.loss, one.loss),
        "val_loss": rel(dp.val_loss, one.val_loss),
        "params_replicated": all(
            a.sharding.is_fully_replicated and len(a.sharding.device_set) == m.size
            for a in jax.tree.leaves(dp.params)
        ),
    }
# Flat parameters
flat = jax_rmsprop.flatten(p0)
flat_loss = jax.tree_util.Partial(lambda f, batch: task.loss(f.tree, batch))
one, dp = fit(flat, 32, flat_loss), fit(flat, 32, flat_loss, mesh=mesh)
facts["flat"] = {"params": rel(dp.params.tree, one.params.tree), "loss": rel(dp.loss, one.loss)}
# parameters sharded on the mesh keep their sharding (a plain tree, w1's columns over "b")
sharded = dict(p0, w1=jax.device_put(p0["w1"], NamedSharding(mesh2d, P(None, "b"))))
dp = fit(sharded, 32, mesh=mesh2d)
facts["kept_sharding"] = dp.params["w1"].sharding.spec == P(None, "b")
facts["kept_sharding_params"] = rel(dp.params, fit(p0, 32).params)
# the compiled epoch: each device takes a share of every batch, gradients all-reduced
data = _fit._replicate(mesh, task.data)
params, state, key = _fit._replicate(mesh, (p0, tx.init(p0), jax.random.key(1)))
batches = NamedSharding(mesh, P(("data",)))
model = jax_rmsprop._model.Model("pure", task.loss)
hlo = (
    _fit._epoch.lower(model, tx, params, None, state, data, key, 0, 32, False, sharding=batches)
    .compile()
    .as_text()
)
facts["all_reduce"] = bool(re.search(r"all-reduce", hlo))
try:
    fit(p0, 30, mesh=mesh)
except ValueError as err:
    facts["batch30"] = str(err)
print("FACTS " + json.dumps(facts), flush=True)
