"""A guard against a deadlock in jaxlib 0.10's CPU LAPACK kernels, which MJX's physics calls.

jaxlib 0.10's batched LAPACK kernels (Cholesky `potrf`, triangular solve `trsm`, ...) split a call whose
`batch * work` reaches 200,000 into parts on XLA's intra-op thread pool and block until the parts are done. They
block on a thread of that same pool, so when the program runs as many such calls at once as the pool has threads
(two on a 2-core machine; a chunk holds independent factorisations, such as the step's and the auto-reset's),
every thread waits for parts that no thread is free to run, and the program hangs with the CPU idle. jaxlib 0.11.2
builds without that path.

MJX factors with `jax.scipy.linalg.cho_factor` / `cho_solve` (the `cholesky` and `triangular_solve` primitives).
Their CPU lowering here splits a call's batch into LAPACK calls that each stay under the threshold, so every call
runs inline on its own thread: the same kernel on the same matrices, so the same numbers. Calls under the threshold
lower as before. docs/reliability.md, "A hang on CPUs", has the measurements.
"""

from __future__ import annotations

import math

from jax._src.interpreters import mlir
from jax._src.lax import linalg
from jax._src.lib.mlir.dialects import hlo

from mjx_tecrl._versions import _release

# jaxlib's threshold: a call whose batch * (its per-matrix work estimate) reaches it fans out to the thread pool.
INLINE_WORK = 200_000
# jaxlib releases whose kernels fan out (0.11.2 and later build without it)
AFFECTED_BELOW = (0, 11, 2)


def work_bound(shape) -> int:
    """An upper bound of jaxlib's per-matrix work estimate for a (..., m, n) operand: m * n * max(m, n)
    (the Cholesky kernel estimates n^3 / 3, the triangular solve at most rows * cols of its operands)."""
    m, n = shape[-2:]
    return max(m * n * max(m, n), 1)


def chunk_size(shapes) -> int:
    """Matrices per LAPACK call so that no call reaches INLINE_WORK, whatever its operands' shapes."""
    return max(1, (INLINE_WORK - 1) // max(work_bound(s) for s in shapes))


def _rows(aval, n: int):
    """`aval` with `n` matrices on its (flattened) leading axis."""
    return aval.update(shape=(n, *aval.shape[1:]))


def _slice_rows(ctx, x, aval, start: int, stop: int):
    """Matrices start..stop of a flat (batch, ...) operand."""
    zeros = (0,) * (aval.ndim - 1)
    return mlir.slice_op(
        ctx,
        x,
        _rows(aval, stop - start),
        start_indices=(start, *zeros),
        limit_indices=(stop, *aval.shape[1:]),
        strides=(1,) * aval.ndim,
    )


def _chunked(rule):
    """`rule` (a batched LAPACK lowering) applied to slices of the batch that each stay under the threshold."""

    def lowering(ctx, *operands, **params):
        batch_shape = ctx.avals_in[0].shape[:-2]
        batch = math.prod(batch_shape)
        size = chunk_size([a.shape for a in ctx.avals_in])
        if batch <= size:
            return rule(ctx, *operands, **params)
        flat_in, flat_out = (
            [a.update(shape=(batch, *a.shape[len(batch_shape) :])) for a in avals]
            for avals in (ctx.avals_in, ctx.avals_out)
        )
        operands = [mlir.reshape(ctx, x, a) for x, a in zip(operands, flat_in, strict=True)]
        parts = []
        for start in range(0, batch, size):
            stop = min(start + size, batch)
            sliced = [_slice_rows(ctx, x, a, start, stop) for x, a in zip(operands, flat_in, strict=True)]
            sub = ctx.replace(
                avals_in=[_rows(a, stop - start) for a in flat_in], avals_out=[_rows(a, stop - start) for a in flat_out]
            )
            parts.append(rule(sub, *sliced, **params))
        joined = [hlo.concatenate([p[i] for p in parts], 0) for i in range(len(flat_out))]
        return [mlir.reshape(ctx, x, a) for x, a in zip(joined, ctx.avals_out, strict=True)]

    lowering.wrapped = rule  # jaxlib's own rule: a second install sees the wrapper and keeps it
    return lowering


def install(jaxlib_version: str | None = None) -> bool:
    """Register the chunked CPU lowerings (once) where the installed jaxlib fans out; True if they are in place."""
    if jaxlib_version is None:
        import jaxlib

        jaxlib_version = jaxlib.__version__
    if _release(jaxlib_version) >= AFFECTED_BELOW:
        return False
    cpu = mlir._platform_specific_lowerings["cpu"]
    for prim in (linalg.cholesky_p, linalg.triangular_solve_p):
        rule = cpu[prim].rule
        if not hasattr(rule, "wrapped"):
            mlir.register_lowering(prim, _chunked(rule), platform="cpu")
    return True
