"""The guard against jaxlib 0.10's CPU LAPACK deadlock (mjx_tecrl/_lapack_cpu.py): MJX's factorisations are split
into LAPACK calls that stay under jaxlib's fan-out threshold, compute the same numbers, and no longer hang."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mjx_tecrl  # noqa: F401  (installs the guard)
from mjx_tecrl import _lapack_cpu

needs_guard = pytest.mark.skipif(
    not _lapack_cpu.install(), reason="this jaxlib's LAPACK kernels do not fan out: the guard is not installed"
)


def _spd(key, batch, n):
    x = jax.random.normal(key, (batch, n, n))
    return x @ jnp.swapaxes(x, -1, -2) + n * jnp.eye(n)


def _solve(a, b):
    return jax.scipy.linalg.cho_solve(jax.scipy.linalg.cho_factor(a), b[..., None])[..., 0]


def _lapack_calls(fn, *args) -> list[tuple[str, list[tuple[int, ...]]]]:
    """(target, operand shapes) of each LAPACK custom call in `fn`'s CPU lowering."""
    calls = []
    for line in jax.jit(fn).lower(*args).as_text().splitlines():
        m = re.search(r"custom_call @(lapack_\w+)\(", line)
        if m:
            operands = line.rsplit(" : (", 1)[1].split(") ->")[0]
            shapes = [tuple(int(d) for d in t.split("x")[:-1]) for t in re.findall(r"tensor<([^>]*)>", operands)]
            calls.append((m.group(1), shapes))
    return calls


@needs_guard
@pytest.mark.parametrize("batch, n", [(4096, 9), (300, 23), (2, 64)])
def test_a_large_batched_factorisation_is_split_into_calls_under_the_fan_out_threshold(batch, n):
    a, b = _spd(jax.random.PRNGKey(0), batch, n), jnp.ones((batch, n))
    calls = _lapack_calls(_solve, a, b)
    assert {t for t, _ in calls} == {"lapack_spotrf_ffi", "lapack_strsm_ffi"}
    for _, shapes in calls:
        matrices = shapes[0][0]  # one matrix always runs inline, whatever its size
        assert matrices == 1 or matrices * max(map(_lapack_cpu.work_bound, shapes)) < _lapack_cpu.INLINE_WORK
    potrf = [s for t, s in calls if t == "lapack_spotrf_ffi"]
    assert sum(s[0][0] for s in potrf) == batch  # every matrix factored once
    assert len(potrf) == math.ceil(batch / _lapack_cpu.chunk_size([(n, n)]))
    assert len(potrf) > 1


@needs_guard
def test_a_batch_under_the_threshold_lowers_to_one_call_as_before():
    a, b = _spd(jax.random.PRNGKey(0), 16, 9), jnp.ones((16, 9))
    calls = _lapack_calls(_solve, a, b)
    assert [t for t, _ in calls].count("lapack_spotrf_ffi") == 1
    assert calls[0][1][0] == (16, 9, 9)


@needs_guard
def test_the_split_computes_the_same_numbers_as_one_call_per_part():
    """Each part runs the same kernel on the same matrices: bit-identical to factoring the parts separately, and
    equal to a float64 reference within float32 rounding. Batch dimensions of any rank keep their shape."""
    n = 9
    a = _spd(jax.random.PRNGKey(1), 2 * 3 * 700, n).reshape(2, 3, 700, n, n)
    b = jax.random.normal(jax.random.PRNGKey(2), (2, 3, 700, n))
    got_l = np.asarray(jax.jit(jnp.linalg.cholesky)(a))
    got_x = np.asarray(jax.jit(_solve)(a, b))
    assert got_l.shape == a.shape and got_x.shape == b.shape
    size = _lapack_cpu.chunk_size([(n, n)])
    flat_a, flat_b = a.reshape(-1, n, n), b.reshape(-1, n)
    part_l = np.concatenate(
        [np.asarray(jax.jit(jnp.linalg.cholesky)(flat_a[i : i + size])) for i in range(0, len(flat_a), size)]
    )
    np.testing.assert_array_equal(got_l.reshape(-1, n, n), part_l)
    ref = np.linalg.solve(np.asarray(flat_a, np.float64), np.asarray(flat_b, np.float64)[..., None])[..., 0]
    np.testing.assert_allclose(got_x.reshape(-1, n), ref, rtol=2e-4, atol=2e-5)


def test_install_applies_to_the_jaxlib_releases_that_fan_out_and_wraps_once():
    from jax._src.interpreters import mlir
    from jax._src.lax import linalg

    assert not _lapack_cpu.install("0.11.2")
    assert not _lapack_cpu.install("0.12.0")
    assert _lapack_cpu.install("0.10.2")
    rule = mlir._platform_specific_lowerings["cpu"][linalg.cholesky_p].rule
    assert _lapack_cpu.install("0.10.2")  # a second install keeps the one wrapper
    assert mlir._platform_specific_lowerings["cpu"][linalg.cholesky_p].rule is rule
    assert not hasattr(rule.wrapped, "wrapped")


@needs_guard
def test_concurrent_large_factorisations_finish():
    """The deadlock itself: twice as many independent batched factorisations as the CPU has cores, each over the
    threshold, in one program run 100 times. Without the guard this hangs with the CPU idle (2 cores, 4 x 4096
    matrices: 2 of 2 tries, killed after 90 s)."""
    script = textwrap.dedent(
        f"""
        import jax, jax.numpy as jnp
        import mjx_tecrl
        k = 2 * {os.cpu_count() or 2}
        xs = [jax.random.normal(jax.random.PRNGKey(i), (4096, 9, 9)) for i in range(k)]
        f = jax.jit(lambda xs: sum(jnp.linalg.cholesky(x @ x.swapaxes(-1, -2) + 9 * jnp.eye(9)).sum() for x in xs))
        for _ in range(100):
            f(xs).block_until_ready()
        print("finished")
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "finished" in out.stdout
