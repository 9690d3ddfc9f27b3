"""An independent NumPy float64 RMSProp, written from the published formulas.

Not derived from jax_rmsprop's code: one explicit step per convention, scalar
loops over the step count, nothing shared with the library.
"""

import numpy as np


def rmsprop_reference(
    x0,
    grads,
    *,
    lr,
    decay=0.9,
    eps=1e-8,
    eps_in_sqrt=False,
    initial_scale=0.0,
    centered=False,
    momentum=None,
    nesterov=False,
    bias_correction=False,
    weight_decay=0.0,
    return_updates=False,
):
    """Returns the parameter path (T+1, ...) for a fixed gradient sequence.

    ``lr`` is a float or a function of the 0-based step. The learning rate is applied
    before the momentum trace (optax's convention) and weight decay is decoupled.
    With ``return_updates``, also the updates (T, ...) as computed, before they are
    added to the parameters.
    """
    x = np.asarray(x0, np.float64).copy()
    nu = np.full_like(x, initial_scale)
    mu = np.zeros_like(x)
    buf = np.zeros_like(x)
    path = [x.copy()]
    updates = []
    for t, g in enumerate(np.asarray(grads, np.float64)):
        eta = lr(t) if callable(lr) else lr
        nu = decay * nu + (1.0 - decay) * g * g
        mu = decay * mu + (1.0 - decay) * g
        corr = 1.0 - decay ** (t + 1) if bias_correction else 1.0
        var = nu / corr - (mu / corr) ** 2 if centered else nu / corr
        var = np.maximum(var, 0.0)
        denom = np.sqrt(var + eps) if eps_in_sqrt else np.sqrt(var) + eps
        with np.errstate(divide="ignore", invalid="ignore"):
            step = np.where(g == 0, 0.0, g / denom)
        u = -eta * step
        if momentum is not None:
            buf = momentum * buf + u
            u = u + momentum * buf if nesterov else buf
        u = u - eta * weight_decay * x
        updates.append(u)
        x = x + u
        path.append(x.copy())
    if return_updates:
        return np.stack(path), np.stack(updates)
    return np.stack(path)


def torch_reference(x0, grads, *, lr, alpha, eps, momentum=0.0, centered=False, weight_decay=0.0):
    """PyTorch's documented algorithm (learning rate after the momentum buffer, coupled decay)."""
    x = np.asarray(x0, np.float64).copy()
    v, gbar, b = np.zeros_like(x), np.zeros_like(x), np.zeros_like(x)
    path = [x.copy()]
    for g in np.asarray(grads, np.float64):
        g = g + weight_decay * x
        v = alpha * v + (1 - alpha) * g * g
        if centered:
            gbar = alpha * gbar + (1 - alpha) * g
            avg = np.sqrt(v - gbar * gbar) + eps
        else:
            avg = np.sqrt(v) + eps
        if momentum > 0:
            b = momentum * b + g / avg
            x = x - lr * b
        else:
            x = x - lr * g / avg
        path.append(x.copy())
    return np.stack(path)


def tf1_reference(x0, grads, *, lr, decay=0.9, momentum=0.0, epsilon=1e-10, centered=False):
    """``tf.compat.v1.train.RMSPropOptimizer`` as documented (ms starts at 1)."""
    x = np.asarray(x0, np.float64).copy()
    ms, mg, mom = np.ones_like(x), np.zeros_like(x), np.zeros_like(x)
    path = [x.copy()]
    for g in np.asarray(grads, np.float64):
        ms = decay * ms + (1 - decay) * g * g
        if centered:
            mg = decay * mg + (1 - decay) * g
            denom = np.sqrt(ms - mg * mg + epsilon)
        else:
            denom = np.sqrt(ms + epsilon)
        mom = momentum * mom + lr * g / denom
        x = x - mom
        path.append(x.copy())
    return np.stack(path)
