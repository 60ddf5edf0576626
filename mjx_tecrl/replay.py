"""On-device uniform FIFO ring buffer, pure under jit (spec §2.7).

Writes are in place (`dynamic_update_slice` on a donated buffer): no copy or roll per insert. The capacity
is a multiple of the number of rows per insert, so an insert never wraps; slots [0, size) are valid.

Rows marked invalid on insert (a diverged env's transition, see `rollout.step_with_mask`) never reach a slot that
`sample` can return: each is replaced by a copy of a valid row of the same insert, and an insert with no
valid row writes nothing. Why copies rather than a per-slot valid flag: sampling uniformly among flagged
slots needs a prefix sum over the whole capacity per batch (or rejection with a data-dependent loop), while
a copy costs one gather of N rows per insert and keeps `sample` a plain uniform draw over [0, size); the
price is that a few transitions appear twice in the buffer, in proportion to the divergence rate.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from mjx_tecrl.types import Steps, Transition


@struct.dataclass
class ReplayState:
    data: Transition  # every leaf [capacity, ...]
    insert_pos: jax.Array  # int32 row of the next write
    size: jax.Array  # int32 number of valid rows


def init(capacity: int, obs_dim: int, action_dim: int, dtype=jnp.float32) -> ReplayState:
    def zeros(*shape):
        return jnp.zeros((capacity, *shape), dtype)

    data = Transition(
        obs=zeros(obs_dim),
        action=zeros(action_dim),
        reward=zeros(),
        next_obs=zeros(obs_dim),
        terminated=zeros(),
        truncated=zeros(),
    )
    return ReplayState(data, jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))


def capacity(state: ReplayState) -> int:
    return state.data.reward.shape[0]


def add(state: ReplayState, rows: Transition, valid: jax.Array | None = None) -> ReplayState:
    """Write N rows at insert_pos; capacity % N == 0 is required (Config.buffer_capacity ensures it).

    `valid` [N] bool (default all): invalid rows are replaced by copies of valid ones; with none valid the
    insert is a no-op (the slots keep their contents and insert_pos / size do not move).
    """
    cap = capacity(state)
    n = rows.reward.shape[0]
    if cap % n:
        raise ValueError(f"buffer capacity {cap} is not a multiple of the insert size {n}")
    written = jnp.ones((), bool)
    if valid is not None:
        rows, written = _fill_invalid(rows, valid)

    def write(buf, x):
        x = x.astype(buf.dtype)
        if valid is not None:
            x = jnp.where(written, x, jax.lax.dynamic_slice_in_dim(buf, state.insert_pos, n, 0))
        return jax.lax.dynamic_update_slice_in_dim(buf, x, state.insert_pos, 0)

    step = jnp.where(written, n, 0)
    return ReplayState(
        data=jax.tree.map(write, state.data, rows),
        insert_pos=(state.insert_pos + step) % cap,
        size=jnp.minimum(state.size + step, cap),
    )


def _fill_invalid(rows: Transition, valid: jax.Array) -> tuple[Transition, jax.Array]:
    """Rows with each invalid one replaced by a valid one (spread over the valid rows), and whether any is valid."""
    n = valid.shape[0]
    num_valid = jnp.sum(valid.astype(jnp.int32))
    order = jnp.argsort(jnp.where(valid, 0, 1), stable=True)  # valid rows first, in their order
    rank = jnp.cumsum(~valid) - 1  # the k-th invalid row copies the (k mod num_valid)-th valid one
    src = jnp.where(valid, jnp.arange(n), order[rank % jnp.maximum(num_valid, 1)])
    return jax.tree.map(lambda x: jnp.take(x, src, axis=0), rows), num_valid > 0


def sample(state: ReplayState, key: jax.Array, batch_size: int) -> Transition:
    """Uniform rows from the written slots [0, size), with replacement. `size` must be positive."""
    idx = jax.random.randint(key, (batch_size,), 0, jnp.maximum(state.size, 1))
    return jax.tree.map(lambda buf: jnp.take(buf, idx, axis=0, mode="clip"), state.data)


def sample_steps(state: ReplayState, key: jax.Array, batch_size: int, n: int, stride: int) -> Steps:
    """Uniform start rows as `sample`, each with its next `n - 1` steps (n-step targets, spec §2.7's truncation rule).

    Each insert writes one row per env in the same order (`stride` = rows per insert), so the step after slot `i`
    is slot `i + stride`. Step k is `included` when it was written after row 0 (not beyond the newest insert) and
    step k - 1 neither terminated, nor was truncated, nor is followed by a reset: its `next_obs` must be step k's
    `obs`, which also breaks a chain at a diverged env's replaced row (`add`).
    """
    cap = capacity(state)
    idx = jax.random.randint(key, (batch_size,), 0, jnp.maximum(state.size, 1))
    blocks = cap // stride
    newest = (state.insert_pos // stride - 1) % blocks  # the block written last
    later = (newest - idx // stride) % blocks  # inserts after row 0's: its successors that exist
    slots = (idx[None] + stride * jnp.arange(n)[:, None]) % cap  # [n, B]
    rows = jax.tree.map(lambda buf: jnp.take(buf, slots, axis=0, mode="clip"), state.data)
    same_episode = (
        (rows.terminated[:-1] < 0.5)
        & (rows.truncated[:-1] < 0.5)
        & jnp.all(rows.obs[1:] == rows.next_obs[:-1], axis=-1)
        & (jnp.arange(1, n)[:, None] <= later[None])
    )  # [n - 1, B]: step k + 1 continues step k
    steps = jnp.concatenate([jnp.ones((1, batch_size), bool), same_episode]).astype(jnp.int32)
    included = jnp.cumprod(steps, axis=0)
    return Steps(rows=rows, included=included.astype(jnp.float32))
