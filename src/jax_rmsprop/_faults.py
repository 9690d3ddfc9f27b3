"""Faults across processes: a collective that fails because another process died.

When one process of a multi-process sweep or fit dies, the others' next collective fails
(gloo on CPU sees the closed connection at once; on accelerators the collective errors or
the coordination service's heartbeat timeout ends it). ``translate`` turns that
runtime error into a ``ProcessLost`` that says so, instead of an XLA status.
"""

from __future__ import annotations

import jax

_SIGNS = ("gloo", "connection", "unavailable", "heartbeat", "socket", "peer", "barrier")


class ProcessLost(RuntimeError):
    """Another process of this multi-process run died; this one stops too."""


def translate(err: Exception, call: str, checkpoint=None) -> Exception:
    """``err`` as ``ProcessLost`` if it is a multi-process collective's failure."""
    if jax.process_count() < 2 or not any(s in str(err).lower() for s in _SIGNS):
        return err
    resume = (
        f" Progress up to the last saved boundary is in {checkpoint}: run the same "
        "command on every process to resume."
        if checkpoint is not None
        else ""
    )
    return ProcessLost(
        f"`{call}`: a collective across the {jax.process_count()} processes failed, most "
        f"likely because another process died (this is process {jax.process_index()}); "
        f"stopping.{resume}\nThe runtime said: {str(err)[:400]}"
    )
