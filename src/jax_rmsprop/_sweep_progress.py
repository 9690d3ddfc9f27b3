"""Where a training sweep stands: what its checkpoint holds, and what Ctrl-C leaves.

A training sweep advances rung by rung (one rung without successive halving) and, in a
rung, chunk by chunk. ``Progress`` is everything needed to go on from a chunk's
end: the losses so far, the configurations still in, the position, and (successive
halving only) the carries that the next rung continues.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import jax
import numpy as np

from . import _resume
from ._signals import Interrupted
from .problems import Task


class SweepInterrupted(Interrupted):
    """Ctrl-C or SIGTERM during ``sweep``, ``tune``: stopped after the chunk in flight.

    Attributes:
      partial: a [`TuneResult`][jax_rmsprop.TuneResult] of the runs that finished (NaN elsewhere);
        for [`sweep`][jax_rmsprop.sweep],
        a [`SweepResult`][jax_rmsprop.SweepResult] of every configuration after ``steps`` steps
        (``None`` if a
        second Ctrl-C cut a chunk mid-call); for ``tune(sampler=...)``, this call's
        finished trials.
      checkpoint: the checkpoint file holding them (run the same call to resume), or
        ``None`` without ``checkpoint``.
      steps: ([`sweep`][jax_rmsprop.sweep]) the steps every configuration had taken.
      counts: ([`tune`][jax_rmsprop.tune] over a grid) where it stood, as a rerun from
        the checkpoint finds it: ``{"epochs": (trained, total), "rung": (rung, rungs),
        "runs": (trained, in the rung), "configs": (trained to the last epoch, all)}``;
        else ``None``.
    """

    def __init__(
        self,
        partial: Any,
        checkpoint: Path | None,
        steps: int | None = None,
        counts: dict[str, tuple[int, int]] | None = None,
    ):
        super().__init__("sweep interrupted")
        self.partial = partial
        self.checkpoint = checkpoint
        self.steps = steps
        self.counts = counts


@dataclasses.dataclass
class Progress:
    """A training sweep between two chunks (host arrays; the runs are rows)."""

    loss: np.ndarray  # (runs, epochs); NaN where not trained
    val: np.ndarray
    ran: np.ndarray  # (runs,) epochs trained
    alive: np.ndarray  # the configurations in this rung
    rung: int = 0
    done: int = 0  # runs of this rung trained
    chunk: int | None = None  # runs per program in this rung, once chosen
    carry_in: Any = None  # this rung's starting carries (successive halving), or None
    kept: list = dataclasses.field(default_factory=list)  # carries of this rung's done runs
    metrics: dict = dataclasses.field(default_factory=dict)  # name -> (runs, epochs), NaN
    # keep_params: every run's latest (params, model state), (runs, ...) host arrays
    trained: Any = None

    @classmethod
    def start(cls, runs: int, epochs: int, configs: int, metrics=()) -> Progress:
        loss = np.full((runs, epochs), np.nan)
        logged = {m: loss.copy() for m in metrics}
        return cls(loss, loss.copy(), np.zeros(runs, np.int64), np.arange(configs), metrics=logged)

    def arrays(self) -> dict[str, Any]:
        """A snapshot to save (copies: the sweep goes on writing its own arrays)."""
        out: dict[str, Any] = {"loss": self.loss.copy(), "val": self.val.copy()}
        out["ran"], out["alive"] = self.ran.copy(), self.alive
        if self.metrics:
            out["metrics"] = {k: v.copy() for k, v in self.metrics.items()}
        if self.carry_in is not None:
            out["carry_in"] = self.carry_in
        if self.kept:
            out["kept"] = self.kept_carries()
        if self.trained is not None:
            out["trained"] = jax.tree.map(np.copy, self.trained)
        return out

    def keep_trained(self, rows: np.ndarray, trained: Any) -> None:
        """Records runs ``rows``' latest ``(params, model state)`` (host arrays)."""
        if self.trained is None:
            runs = self.loss.shape[0]
            self.trained = jax.tree.map(lambda a: np.zeros((runs, *a.shape[1:]), a.dtype), trained)
        jax.tree.map(lambda o, a: o.__setitem__(rows, a), self.trained, trained)

    def kept_carries(self) -> Any:
        """This rung's kept carries as one.

        The one chunk's (on the devices when the rung was one program), else the chunks'
        host arrays concatenated.
        """
        if len(self.kept) == 1:
            return self.kept[0]
        return jax.tree.map(lambda *a: np.concatenate(a), *self.kept)

    def position(self) -> dict[str, Any]:
        return {
            "rung": self.rung,
            "done": self.done,
            "chunk": self.chunk,
            "alive": int(self.alive.size),
            "carry_in": self.carry_in is not None,
            "kept": bool(self.kept),
            "trained": self.trained is not None,
        }

    @staticmethod
    def like(position: dict, runs: int, epochs: int, per_config: int, run: Any, metrics=()) -> dict:
        """The template of ``arrays`` at ``position``; ``run``: one run's abstract carry."""
        sds = jax.ShapeDtypeStruct
        out: dict[str, Any] = {
            "loss": sds((runs, epochs), np.float64),
            "val": sds((runs, epochs), np.float64),
            "ran": sds((runs,), np.int64),
            "alive": sds((position["alive"],), np.int64),
        }
        if metrics:
            out["metrics"] = {m: sds((runs, epochs), np.float64) for m in metrics}
        if position["carry_in"]:
            out["carry_in"] = _resume.stacked(run, position["alive"] * per_config)
        if position["kept"]:
            out["kept"] = _resume.stacked(run, position["done"])
        if position.get("trained"):  # (checkpoints written before keep_params had none)
            out["trained"] = _resume.stacked((run.params, run.state), runs)
        return out

    @classmethod
    def restored(cls, arrays: dict, position: dict) -> Progress:
        return cls(
            arrays["loss"],
            arrays["val"],
            arrays["ran"],
            arrays["alive"],
            position["rung"],
            position["done"],
            position["chunk"],
            arrays.get("carry_in"),
            [arrays["kept"]] if "kept" in arrays else [],
            dict(arrays.get("metrics", {})),
            arrays.get("trained"),
        )


def fingerprint(task: Task, params0: Any, names, cells, optimizer, options, **settings) -> dict:
    """What decides a training sweep's numbers, as text (see ``_resume``)."""
    return _resume.fingerprint(
        functions={"task loss": task.loss, "task init": task.init, "optimizer": optimizer},
        digests={"initial params (seed 0)": params0},
        texts={"options": repr(sorted((options or {}).items()))},
        grid=(names, cells),
        data=(task.data, task.validation, task.batch_size),
        settings=settings,
    )
