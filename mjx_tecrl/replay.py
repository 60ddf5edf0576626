"""On-device uniform FIFO ring buffer, pure under jit (spec §2.7).

Writes are in place (`dynamic_update_slice` on a donated buffer): no copy or roll per insert. The capacity
is a multiple of the number of rows per insert, so an insert never wraps; slots [0, size) are valid.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from mjx_tecrl.types import Transition


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


def add(state: ReplayState, rows: Transition) -> ReplayState:
    """Write N rows at insert_pos; capacity % N == 0 is required (Config.buffer_capacity ensures it)."""
    cap = capacity(state)
    n = rows.reward.shape[0]
    if cap % n:
        raise ValueError(f"buffer capacity {cap} is not a multiple of the insert size {n}")
    data = jax.tree.map(
        lambda buf, x: jax.lax.dynamic_update_slice_in_dim(buf, x.astype(buf.dtype), state.insert_pos, 0),
        state.data,
        rows,
    )
    return ReplayState(
        data=data,
        insert_pos=(state.insert_pos + n) % cap,
        size=jnp.minimum(state.size + n, cap),
    )


def sample(state: ReplayState, key: jax.Array, batch_size: int) -> Transition:
    """Uniform rows from the written slots [0, size), with replacement. `size` must be positive."""
    idx = jax.random.randint(key, (batch_size,), 0, jnp.maximum(state.size, 1))
    return jax.tree.map(lambda buf: jnp.take(buf, idx, axis=0, mode="clip"), state.data)
