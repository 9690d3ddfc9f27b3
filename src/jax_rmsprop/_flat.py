r"""Parameters as one flat buffer per dtype: the fast path for many-leaf pytrees.

XLA pays a fixed cost per buffer an executable reads or writes (~20 µs per output
buffer on CPU), so an optimizer step over a 4000-leaf pytree costs ~90 ms whatever its
arithmetic, while the same update on one flat buffer is memory-bound. ``Flat``
keeps the parameters (and therefore the gradients and the optimizer state) as one 1-D
buffer per dtype and gives the model a pytree *view* of them::

    flat = jax_rmsprop.flatten(params)          # once
    opt_state = tx.init(flat)                   # state buffers: one per dtype too

    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def train_step(flat, opt_state, batch):
        loss, grads = jax.value_and_grad(lambda f: loss_fn(f.tree, batch))(flat)
        updates, opt_state = tx.update(grads, opt_state, flat)
        return optax.apply_updates(flat, updates), opt_state, loss

The view is a split (``jnp.split``) of each buffer, whose gradient is one
concatenation, so the backward pass writes one gradient buffer per dtype. ``Flat`` is
a pytree, so any optax transformation works on it; transformations that treat leaves
differently (``optax.masked``, per-leaf clipping) see one leaf per dtype instead.

Use it when the tree has hundreds of leaves or more and lives on one device (or is
replicated for data parallelism). Keep the plain tree for parameters sharded across
devices (a flat buffer cannot carry per-leaf shardings) or when per-leaf transforms
matter.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class _Layout:
    """Where each leaf lives: hashable, so it is static pytree metadata."""

    treedef: Any
    dtypes: tuple[str, ...]  # one per buffer
    leaves: tuple[tuple[int, int, tuple[int, ...]], ...]  # (buffer, offset, shape) per leaf
    sizes: tuple[int, ...]  # elements per buffer


@functools.lru_cache(maxsize=256)
def _fingerprint(layout: _Layout) -> str:
    """A short digest of the layout, stable across processes (for checkpoint key paths)."""
    text = repr((str(layout.treedef), layout.dtypes, layout.leaves))
    return hashlib.sha1(text.encode()).hexdigest()[:12]


@jax.tree_util.register_pytree_with_keys_class
class Flat:
    """Parameters (or gradients, or state) stored as one 1-D buffer per dtype.

    Attributes:
      buffers: tuple of 1-D arrays, one per dtype, in order of first appearance.
      tree: the original pytree, as a differentiable view of the buffers.
    """

    __slots__ = ("buffers", "layout")

    def __init__(self, buffers: tuple[jax.Array, ...], layout: _Layout):
        self.buffers = tuple(buffers)
        self.layout = layout

    def tree_flatten(self):
        """Pytree protocol: the buffers are the leaves, the layout is static."""
        return self.buffers, self.layout

    def tree_flatten_with_keys(self):
        """Pytree protocol, with a key per buffer: its dtype and the layout's digest.

        A checkpoint of another layout with the same buffer sizes then does not match.
        """
        fp = _fingerprint(self.layout)
        keys = [jax.tree_util.DictKey(f"{d}@{fp}") for d in self.layout.dtypes]
        return tuple(zip(keys, self.buffers)), self.layout

    @classmethod
    def tree_unflatten(cls, layout, buffers):
        """Pytree protocol."""
        return cls(tuple(buffers), layout)

    @property
    def tree(self) -> Any:
        """The pytree view: slices of the buffers, reshaped (XLA fuses them into their users)."""
        lay = self.layout
        parts = []
        for b, buf in enumerate(self.buffers):
            mine = [(i, off, shape) for i, (bi, off, shape) in enumerate(lay.leaves) if bi == b]
            cuts = [off for _, off, _ in mine[1:]]
            pieces = jnp.split(buf, cuts) if cuts else [buf]
            parts += [(i, piece.reshape(shape)) for (i, _, shape), piece in zip(mine, pieces)]
        parts.sort(key=lambda ip: ip[0])
        return jax.tree.unflatten(lay.treedef, [p for _, p in parts])

    def __repr__(self) -> str:
        bufs = ", ".join(f"{d}[{n}]" for d, n in zip(self.layout.dtypes, self.layout.sizes))
        return f"Flat({len(self.layout.leaves)} leaves in {bufs})"


def flatten(tree: Any) -> Flat:
    """Packs a pytree of arrays into a [`Flat`][jax_rmsprop.Flat] (one concatenation per dtype).

    Args:
      tree: a pytree of arrays (parameters, typically).

    Returns:
      A [`Flat`][jax_rmsprop.Flat]; ``flatten(tree).tree`` equals ``tree`` leaf for leaf.

    Raises:
      ValueError: if the tree has no array leaves.
    """
    leaves, treedef = jax.tree.flatten(tree)
    if not leaves:
        raise ValueError("`flatten(tree=...)` needs at least one array leaf.")
    leaves = [jnp.asarray(x) for x in leaves]
    dtypes: list[str] = []
    groups: list[list[jax.Array]] = []
    sizes: list[int] = []
    where = []
    for x in leaves:
        name = jnp.dtype(x.dtype).name
        if name not in dtypes:
            dtypes.append(name)
            groups.append([])
            sizes.append(0)
        b = dtypes.index(name)
        where.append((b, sizes[b], tuple(x.shape)))
        groups[b].append(x.reshape(-1))
        sizes[b] += int(np.prod(x.shape, dtype=np.int64))
    buffers = tuple(jnp.concatenate(g) if len(g) > 1 else g[0] for g in groups)
    layout = _Layout(treedef, tuple(dtypes), tuple(where), tuple(sizes))
    return Flat(buffers, layout)
