r"""Block-wise 8-bit and 4-bit optimizer state: the codec and its stored form.

A quantized leaf ([`QuantizedState`][jax_rmsprop.QuantizedState]) is one small
floating-point code per element and one power-of-two scale per block of ``block``
elements along the last axis:

$$
x = \pm\, 2^{\,e_b - T}\; 2^{\lfloor c / 2^M \rfloor}\,(1 + (c \bmod 2^M) / 2^M),
\qquad c \in \{1, \dots, c_{\max}\}
$$

where $c$ is the element's magnitude code, $M$ its mantissa bits, $e_b$ its block's
exponent and $T$ the largest value of $\lfloor c/2^M \rfloor$ (the top binade).
For $\nu$, code 0 is an exact zero and nothing else: a value below the smallest code is
stored as the smallest code, never flushed to 0 (a flushed $\nu$ turns
$g/(\sqrt\nu+\epsilon)$ into a step of $\eta/\sqrt{1-\rho}$). A signed value (the
trace, $\mu$) below the smallest code rounds stochastically to 0 or that code, keeping
its mean: stored as the smallest code it would push every small element away from 0.
The all-ones magnitude marks a non-finite value (decoded as $+\infty$ in magnitude).

| state | bits | sign | exponent | mantissa $M$ | binades per block | codes per byte |
|---|---|---|---|---|---|---|
| $\nu$ | 8 | - | 5 | 3 | 32 | 1 |
| trace, $\mu$ | 8 | 1 | 4 | 3 | 16 | 1 |
| $\nu$ | 4 | - | 4 | 0 | 16 | 2 |
| trace | 4 | 1 | 3 | 0 | 8 | 2 |

``centered=True`` is refused at 4 bits: its variance $\nu - \mu^2$ cancels, and with
one mantissa bit (rounding noise of ~25%) it was noise that sent the step to
$g/\epsilon$ (measured: a noisy quadratic diverged to 1e11 where float32 converged).

$\nu$ is non-negative, so its codes carry no sign: a signed map (bitsandbytes') spends
half its codes on values that never occur. Range decided over precision, by measurement
(a noisy quadratic of 8192 elements with curvatures over 4 decades in every block,
``tests/transform/test_quantized.py``; final loss / float32's): at 8 bits $\nu$ in e4m4
(16 binades) gave 1.005 at decay 0.9 but 4.0 with momentum 0.9, e5m3 (32 binades) 0.996
and 1.011; at 4 bits e3m1 gave 1.12 and 1.65 (decay 0.9, 0.999), e4m0 (powers of two,
stochastically rounded) 0.993 and 0.985. The 4-bit trace: e2m1 7.2, e3m0 4.7 (momentum
0.9; 0.965 and 0.946 at 0.5).

**Encoding is one elementwise pass.** The block exponent used to encode step $t$'s
values is read from the codes stored at step $t-1$ (their block maximum, a reduction over
one byte per element that does not depend on this step's arithmetic), set $H$ binades
above that maximum:

$$ e_b \leftarrow e_b^{\text{old}} - T + \lfloor c^{\text{old}}_{\max} / 2^M \rfloor + H
\;(+J \text{ when } c^{\text{old}}_{\max} = c_{\max}) $$

A value above the top code is stored as the top code (the block was saturated: the next
exponent jumps $J$ more binades); this step's update is always computed from the float32
value, so it is exact whatever the storage, and $|\Delta| \le \eta/\sqrt{1-\rho}$ holds.
A block whose stored codes are all zero (the first step from $\nu_0 = 0$) takes its
exponent from this step's values at a few sampled positions.

**Rounding is stochastic** with counter-based bits (deterministic given the step): the
float32 bit pattern of $|x|$ plus a uniform integer below one code step, truncated.
Round-to-nearest freezes a moving average whose increment $(1-\rho)(g^2-\nu)$ is below
half a code step (at $\rho = 0.999$ it nearly always is). The bits are a hash of the
element's index, the leaf and the step count. A golden-ratio (Weyl) sequence in the step
count was tried first (in NumPy, on a slowly drifting value, its errors partly cancel over
steps: 5.8% RMS error of $\sqrt\nu$ against 7.9% hashed at 4 mantissa bits), but the
stored value feeds back into the next step's, and on a drifting gradient at $\rho =
0.999$ the mean $\nu$ sat 3% (8 bits) and 19% (4 bits) below float32's; with the hash,
1.2% and 2.1% above (round-to-nearest in bfloat16: 2.5x above, stale; so a bfloat16 or
float16 state is rounded stochastically too, by ``round_stochastically``).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

_GOLDEN = 0x9E3779B9  # 2^32 / golden ratio: spreads the step counts over the hash keys
_LEAF = 0x85EBCA6B  # decorrelates leaves
MIN_QUANTIZED_SIZE = 4096  # leaves below keep their plain state (bitsandbytes' threshold)
_SAMPLES = 16  # positions per block read to set an all-zero block's exponent


class QuantizedState(NamedTuple):
    """One leaf of the state in 8 or 4 bits (``rmsprop(..., state_bits=8|4)``).

    Attributes:
      codes: ``uint8``, shaped like the parameter (4 bits: two codes per byte along the
        last axis, which has ``ceil(n / 2)`` bytes: in each block of the last axis,
        element ``i`` of its first half in the low half of a byte and element ``i`` of
        its second half in the high half; a row's partial last block pairs its own
        halves. Before 2026-12-08 a row's halves were paired: a 4-bit state saved
        before then must not be loaded. ``fit(checkpoint=...)`` with ``rmsprop`` or a
        compat constructor refuses it (its fingerprint's ``state_layout`` differs); an
        optimizer wrapped in a chain, a sweep's checkpoint or ``checkpoint.restore``
        cannot tell: start those afresh).
      exponents: ``uint8``, one float32 biased exponent per block of the last axis
        (``ceil(n / block)`` of them): the block's top binade.
    """

    codes: jax.Array
    exponents: jax.Array


@dataclasses.dataclass(frozen=True)
class Codec:
    """One stored format: bits per code, signed or not, mantissa bits, block, headroom."""

    bits: int
    signed: bool
    mantissa: int
    block: int
    headroom: int  # binades above the last step's block maximum
    jump: int  # more binades when the block was saturated

    @property
    def magnitude_bits(self) -> int:
        return self.bits - 1 if self.signed else self.bits

    @property
    def largest(self) -> int:
        r"""$c_{\max}$, the largest magnitude code (one more marks a non-finite value)."""
        return (1 << self.magnitude_bits) - 2

    @property
    def top(self) -> int:
        """$T$: the largest binade index of a magnitude code."""
        return self.largest >> self.mantissa


@dataclasses.dataclass(frozen=True)
class StateFormat:
    """The static choice of ``state_bits`` and ``min_quantized_size`` (part of ``Variant``)."""

    bits: int
    min_size: int

    def codec(self, slot: int) -> Codec:
        """The codec of state ``slot``: 0 nu (unsigned), 1 the centered mu, 2 the trace."""
        if self.bits == 8:
            return Codec(8, slot > 0, 3, 256, 2 if slot > 0 else 3, 4)
        return Codec(4, slot > 0, 0, 128, 1, 2)

    def applies(self, p: Any) -> bool:
        """Whether a parameter's state is quantized (large enough, real, at least 1-D)."""
        return len(p.shape) >= 1 and math.prod(p.shape) >= max(self.min_size, 1)


def _blocks(n: int, block: int) -> int:
    return -(-n // block)


def _per_element(e: jax.Array, n: int, block: int) -> jax.Array:
    """``e`` (one per block of the last axis) repeated over its block's elements."""
    # (a broadcast and a reshape, which XLA fuses into index arithmetic; jnp.repeat
    # lowers to a scatter and cumulative sums)
    full = jnp.broadcast_to(e[..., None], (*e.shape, block))
    return full.reshape(*e.shape[:-1], e.shape[-1] * block)[..., :n]


def _block_max(c: jax.Array, block: int) -> jax.Array:
    """The maximum of each block of ``block`` elements along the last axis."""
    n = c.shape[-1]
    nb = _blocks(n, block)
    if nb * block != n:
        c = jnp.pad(c, [(0, 0)] * (c.ndim - 1) + [(0, nb * block - n)])
    return jnp.max(c.reshape(*c.shape[:-1], nb, block), axis=-1)


def _pack(c: jax.Array, block: int) -> jax.Array:
    """4-bit codes (``uint8``, one per element) two per byte: ``_unpack``'s layout."""
    n = c.shape[-1]
    full = n // block * block
    lead = c.shape[:-1]
    shifts = jnp.asarray([0, 4], jnp.uint8).reshape(*(1,) * c.ndim, 2, 1)
    head = c[..., :full].reshape(*lead, full // block, 2, block // 2)
    head = jnp.sum(head << shifts, axis=-2, dtype=jnp.uint8).reshape(*lead, full // 2)
    if full == n:
        return head
    t = c[..., full:]
    h = -(-t.shape[-1] // 2)
    hi = jnp.pad(t[..., h:], [(0, 0)] * len(lead) + [(0, 2 * h - t.shape[-1])])
    return jnp.concatenate([head, t[..., :h] | (hi << 4)], axis=-1)


def _unpack(b: jax.Array, n: int, block: int) -> jax.Array:
    """The 4-bit codes of a row of ``n`` elements, stored two per byte (``_pack``).

    In each whole block of the row, element ``i`` of its first half is the low half of a
    byte and element ``i`` of its second half the high half of the same byte; the row's
    last, partial block (``r`` elements) pairs its ``i`` with ``i + ceil(r / 2)`` (an odd
    one's last high half is 0). Pairs within a block, never across blocks: a last axis
    sharded over devices in whole blocks keeps each byte's two codes on one shard, and
    XLA computes each block as a ``(2, block / 2)`` view and packs it as a sum over that
    axis of 2 (a bitwise or of two halves in one fused loop was 5-7x slower: 16 ms against
    2.3-3 on 1e7 elements, the 4-bit step 34 ms against 11-17; the row's halves, the
    layout before 2026-12-08, also put paired codes on two shards).
    """
    full = n // block * block
    lead = b.shape[:-1]
    head = b[..., : full // 2].reshape(*lead, full // block, 1, block // 2)
    head = jnp.concatenate([head & 15, head >> 4], axis=-2).reshape(*lead, full)
    if full == n:
        return head
    t = b[..., full // 2 :]
    tail = jnp.concatenate([t & 15, t >> 4], axis=-1)[..., : n - full]
    return jnp.concatenate([head, tail], axis=-1)


def _bytes_of(q: QuantizedState, codec: Codec, n: int) -> jax.Array:
    """The stored code of each element (4 bits: unpacked), as ``int32``."""
    c = _unpack(q.codes, n, codec.block) if codec.bits == 4 else q.codes
    return c.astype(jnp.int32)


def _magnitude(b: jax.Array, codec: Codec) -> jax.Array:
    r"""The magnitude code $c$ of stored codes ``b``; -1 marks a non-finite value.

    Stored: $c + 1$ unsigned, $2(c + 1) + \text{sign}$ signed, 0 (and 1) non-finite: the
    order of the stored codes is the order of the magnitudes, so a block's largest finite
    magnitude is its largest stored code, read by one reduction over the raw bytes.
    """
    return ((b >> 1) if codec.signed else b) - 1


def decode(q: QuantizedState, codec: Codec, shape: tuple[int, ...]) -> jax.Array:
    """The float32 values stored in ``q`` (``shape``: the parameter's)."""
    n = shape[-1]
    b = _bytes_of(q, codec, n)
    mag = _magnitude(b, codec)
    e = _per_element(q.exponents.astype(jnp.int32), n, codec.block)
    bits = (mag << (23 - codec.mantissa)) + ((e - codec.top) << 23)
    y = jax.lax.bitcast_convert_type(bits, jnp.float32)
    y = jnp.where(mag == 0, jnp.float32(0), y)
    y = jnp.where(mag < 0, jnp.float32(jnp.inf), y)
    if codec.signed:
        y = jnp.where(b & 1 != 0, -y, y)
    return y


def _mix(x: jax.Array) -> jax.Array:
    """A strong 32-bit integer hash (two multiply-xorshift rounds)."""
    x = x * jnp.uint32(0x7FEB352D)
    x = x ^ (x >> 15)
    x = x * jnp.uint32(0x846CA68B)
    return x ^ (x >> 16)


def dither(shape: tuple[int, ...], count: jax.Array, leaf: int) -> jax.Array:
    """Uniform ``uint32`` rounding offsets for step ``count`` of leaf ``leaf``.

    ``(i XOR K) * C`` for the element's flat index ``i`` (row-major), an odd constant
    ``C`` and a per-step, per-leaf key ``K``, a strong hash of the step count and the leaf
    (one scalar per step): deterministic given the step. For one element, ``i XOR K`` is
    uniform and independent from step to step (``K`` is), and so is its product by an odd
    constant (a bijection of the 32-bit integers), top bits included: each value's rounding
    keeps its mean over the steps. Across the elements of one step the multiplication
    spreads neighbouring indices over the range. One xor and one multiply per element
    (the full hash per element cost 1.2 ms of a 10 ms step on 1e7 elements).
    """
    k = _mix(count.astype(jnp.uint32) * jnp.uint32(_GOLDEN) + jnp.uint32((leaf * _LEAF) % 2**32))
    i = jnp.zeros(shape, jnp.uint32)
    stride = 1
    for axis in reversed(range(len(shape))):  # the flat index (rows do not share bits)
        i = i + jax.lax.broadcasted_iota(jnp.uint32, shape, axis) * jnp.uint32(stride % 2**32)
        stride *= shape[axis]
    return (i ^ k) * jnp.uint32(0x9E3779B1)


def _uniform(dither_bits: jax.Array) -> jax.Array:
    """A float32 uniform in [0, 1) from the top 24 of the dither's bits."""
    return (dither_bits >> 8).astype(jnp.float32) * jnp.float32(2.0**-24)


def _top_exponent(m: jax.Array, codec: Codec, empty: Any) -> jax.Array:
    """The block exponent that puts ``m`` (>= 0) ``headroom`` binades below the top.

    ``empty`` where ``m`` is 0.
    """
    e = jax.lax.bitcast_convert_type(m, jnp.int32) >> 23
    return jnp.where(m > 0, e + codec.headroom, empty)


def round_stochastically(x: jax.Array, dtype: Any, dither_bits: jax.Array) -> jax.Array:
    """``x`` (float32 or wider) in ``dtype`` (bfloat16, float16), stochastically rounded.

    The float32 bit pattern plus a uniform integer below one ulp of ``dtype``, truncated
    to ``dtype``'s significant bits: up with probability (distance to the lower neighbour)
    / ulp, so the stored value's mean is ``x`` (sign and magnitude are separate bits: the
    magnitude is rounded). Exact in ``dtype``'s normal range (the cast after the
    truncation does not round), and on float16's subnormal grid of 2^-24. Non-finite values
    are kept; one that would round up past ``dtype``'s largest is cut.
    """
    x = x.astype(jnp.float32)
    info = jnp.finfo(dtype)
    drop = 23 - int(info.nmant)
    bits = jax.lax.bitcast_convert_type(x, jnp.uint32)
    mask = jnp.uint32((0xFFFFFFFF << drop) & 0xFFFFFFFF)
    up = jax.lax.bitcast_convert_type((bits + (dither_bits >> (32 - drop))) & mask, jnp.float32)
    down = jax.lax.bitcast_convert_type(bits & mask, jnp.float32)
    y = jnp.where(jnp.abs(up) <= float(info.max), up, down)  # (not past dtype's largest)
    if float(info.smallest_normal) > float(jnp.finfo(jnp.float32).smallest_normal):
        # float16's subnormals: a fixed grid of 2^-24, rounded up in proportion too
        # (where nu of a gradient below ~1e-2 lives; to nearest it would go stale there)
        tiny, grid = float(info.smallest_normal), float(info.smallest_subnormal)
        u = _uniform(dither_bits)
        sub = jnp.sign(x) * jnp.floor(jnp.abs(x) / grid + u) * grid
        y = jnp.where(jnp.abs(x) < tiny, sub, y)
    return jnp.where(jnp.abs(x) < jnp.inf, y, x).astype(dtype)


def _sampled_exponent(x: jax.Array, codec: Codec) -> jax.Array:
    """A block exponent from ``|x|`` at ``_SAMPLES`` elements of each block; 0: all zero.

    The first ``_SAMPLES / 2`` elements of each half of the block: two cache lines of a
    block of 256 float32 (a strided sample touched every line of the gradient, 2.7 ms of a
    10 ms step on 1e7 elements). Reduced per block with a reduction, which XLA does not
    fuse into the elementwise encoding: the samples are computed once, not per element.
    """
    n = x.shape[-1]
    lead = x.shape[:-1]
    nb = _blocks(n, codec.block)
    half, s = codec.block // 2, _SAMPLES // 2
    pad = [(0, 0)] * len(lead) + [(0, nb * codec.block - n)]
    if nb * codec.block != n:  # (the last block's missing elements: zeros, sampled as such)
        x = jnp.pad(x, pad)
    picks = jnp.abs(x.reshape(*lead, nb, 2, half)[..., :s])
    picks = jnp.where(picks < jnp.inf, picks, jnp.float32(0))
    m = jnp.max(picks.reshape(*lead, nb, 2 * s), axis=-1)
    return _top_exponent(m, codec, 0)  # (0: the samples are all zero)


def next_exponents(q: QuantizedState, codec: Codec, new: jax.Array) -> jax.Array:
    r"""The block exponents for encoding ``new`` (this step's values), as ``int32``.

    From the stored codes' block maxima (last step's values), ``headroom`` binades above.
    A block of zeros (every block at the first step from $\nu_0 = 0$; later, a block whose
    gradient was exactly 0 so far) takes the largest exponent of its row (the last axis):
    its other blocks' and the samples of ``new`` in its zero blocks. An exponent too high
    stores a block's values at its smallest code: their $\nu$ overstated, and that value
    decays by $\rho$ a step (hundreds of steps of near-frozen weights); too low saturates it
    (its $\nu$ understated, the next step larger, the exponent up $J$ binades a step). A
    block's own sample alone can miss its values (a zero prefix, a pruning mask), which
    its row's blocks then bound. Where the last axis is sharded this maximum is one small
    all-reduce per step (of block exponents, never of values), the step's only collective.
    """
    b = _unpack(q.codes, new.shape[-1], codec.block) if codec.bits == 4 else q.codes
    mc = _block_max(b, codec.block)
    mc = jnp.maximum(_magnitude(mc.astype(jnp.int32), codec), 0)
    e_old = q.exponents.astype(jnp.int32)
    e = e_old - codec.top + (mc >> codec.mantissa) + codec.headroom
    e = e + jnp.where(mc == codec.largest, codec.jump, 0)
    zero = mc == 0
    row = jnp.max(jnp.where(zero, _sampled_exponent(new, codec), e), axis=-1, keepdims=True)
    row = jnp.where(row > 0, row, 127 + codec.headroom)  # (nothing seen: 2^headroom)
    e = jnp.minimum(jnp.where(zero, row, e), 254)
    # Ends in a reduction (the maximum with the lowest exponent), which XLA does not fuse
    # into the elementwise encoding: the exponents are computed once per block, not once
    # per element (as a clip they were, some twenty integer operations per element).
    return jnp.max(jnp.stack([e, jnp.full_like(e, codec.top + 1)], axis=-1), axis=-1)


def encode(x: jax.Array, e: jax.Array, codec: Codec, dither_bits: jax.Array) -> QuantizedState:
    """``x`` (float32) in ``codec`` with block exponents ``e``, stochastically rounded."""
    n = x.shape[-1]
    mag = jnp.abs(x) if codec.signed else x
    bits = jax.lax.bitcast_convert_type(mag, jnp.int32)
    shift = 23 - codec.mantissa
    r = (dither_bits >> (32 - shift)).astype(jnp.int32)
    ee = _per_element(e, n, codec.block)
    c = ((bits + r) >> shift) - ((ee - codec.top) << codec.mantissa)
    c = jnp.clip(c, 1, codec.largest)
    if codec.signed:
        # Below the smallest code: 0 or that code, with the probability that keeps the
        # mean (a trace that decays to 0 must reach it; nu never rounds to 0).
        low = jax.lax.bitcast_convert_type((1 << shift) + ((ee - codec.top) << 23), jnp.float32)
        u = _uniform(dither_bits)
        c = jnp.where(mag < low, (mag > u * low).astype(jnp.int32), c)
    c = jnp.where(mag == 0, 0, c) + 1
    if codec.signed:
        # (int32 throughout: an int32 | weakly typed int64 array crashes eager JAX 0.10)
        c = (c << 1) | (x < 0).astype(jnp.int32)
    c = jnp.where(mag < jnp.inf, c, 0)  # (NaN too)
    codes = c.astype(jnp.uint8)
    return QuantizedState(
        _pack(codes, codec.block) if codec.bits == 4 else codes, e.astype(jnp.uint8)
    )


def init_state(p: jax.Array, value: Any, codec: Codec) -> QuantizedState:
    """A leaf holding ``value`` (>= 0, possibly traced) everywhere, shaped for ``p``.

    Derived from ``p`` (elementwise, and a block reduction for the exponents), so codes
    and exponents inherit the parameter's sharding, as the step's outputs do (a replicated
    exponent array could not be donated to the first step).
    """
    src = jnp.real(p) if jnp.iscomplexobj(p) else p
    x = jnp.where(jnp.isfinite(src), src, 0).astype(jnp.float32) * 0 + jnp.float32(value)
    m = _block_max(x, codec.block)  # (value everywhere: padded blocks hold 0)
    e = _top_exponent(m, codec, codec.top + 1)
    return encode(x, jnp.clip(e, codec.top + 1, 254), codec, jnp.zeros(p.shape, jnp.uint32))
