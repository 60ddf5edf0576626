"""Replay ring buffer: in-place FIFO writes, wrap-around, sampling only written rows."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mjx_tecrl import replay
from mjx_tecrl.config import Config
from mjx_tecrl.types import Transition

OBS, ACT = 3, 2


def rows(ids) -> Transition:
    """Transitions that encode their own id in every field (reward = id)."""
    ids = jnp.asarray(ids, jnp.float32)
    n = ids.shape[0]
    return Transition(
        obs=jnp.broadcast_to(ids[:, None], (n, OBS)),
        action=jnp.broadcast_to(-ids[:, None], (n, ACT)),
        reward=ids,
        next_obs=jnp.broadcast_to(ids[:, None] + 0.5, (n, OBS)),
        terminated=ids % 2,
        truncated=(ids + 1) % 2,
    )


def assert_rows_consistent(data: Transition, ids: np.ndarray) -> None:
    """Every field of every row agrees with the id in `reward`: rows are never mixed up."""
    ids = np.asarray(ids)
    np.testing.assert_array_equal(np.asarray(data.reward), ids)
    np.testing.assert_array_equal(np.asarray(data.obs), np.broadcast_to(ids[:, None], (len(ids), OBS)))
    np.testing.assert_array_equal(np.asarray(data.action), -np.broadcast_to(ids[:, None], (len(ids), ACT)))
    np.testing.assert_array_equal(np.asarray(data.next_obs), ids[:, None] + 0.5 + np.zeros((1, OBS)))
    np.testing.assert_array_equal(np.asarray(data.terminated), ids % 2)
    np.testing.assert_array_equal(np.asarray(data.truncated), (ids + 1) % 2)


def test_init_capacity_dtype_and_empty():
    st = replay.init(12, OBS, ACT)
    assert replay.capacity(st) == 12
    assert st.data.obs.shape == (12, OBS) and st.data.next_obs.shape == (12, OBS)
    assert st.data.action.shape == (12, ACT)
    for leaf in (st.data.reward, st.data.terminated, st.data.truncated):
        assert leaf.shape == (12,)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(st.data))
    assert int(st.size) == 0 and int(st.insert_pos) == 0
    assert st.size.dtype == jnp.int32 and st.insert_pos.dtype == jnp.int32


def test_configured_dtype_is_kept_through_add():
    st = replay.init(8, OBS, ACT, dtype=jnp.bfloat16)
    assert all(leaf.dtype == jnp.bfloat16 for leaf in jax.tree.leaves(st.data))
    st = replay.add(st, rows([1, 2, 3, 4]))  # float32 rows are cast to the buffer dtype
    assert all(leaf.dtype == jnp.bfloat16 for leaf in jax.tree.leaves(st.data))
    np.testing.assert_array_equal(np.asarray(st.data.reward[:4], np.float32), [1, 2, 3, 4])


def test_fifo_fill_then_wrap_overwrites_oldest_in_place():
    add = jax.jit(replay.add)
    st = replay.init(8, OBS, ACT)
    st = add(st, rows([1, 2, 3, 4]))
    assert int(st.insert_pos) == 4 and int(st.size) == 4
    assert_rows_consistent(jax.tree.map(lambda x: x[:4], st.data), np.array([1, 2, 3, 4]))
    assert all(not np.asarray(leaf[4:]).any() for leaf in jax.tree.leaves(st.data))  # still untouched
    st = add(st, rows([5, 6, 7, 8]))
    assert int(st.insert_pos) == 0 and int(st.size) == 8  # wrapped exactly at capacity
    assert_rows_consistent(st.data, np.arange(1, 9))
    st = add(st, rows([9, 10, 11, 12]))  # capacity + 4 rows: the 4 oldest are overwritten
    assert int(st.insert_pos) == 4 and int(st.size) == 8  # size saturates
    assert_rows_consistent(st.data, np.array([9, 10, 11, 12, 5, 6, 7, 8]))
    st = add(st, rows([13, 14, 15, 16]))
    assert int(st.insert_pos) == 0 and int(st.size) == 8
    assert_rows_consistent(st.data, np.arange(9, 17))


def test_add_under_scan_with_many_wraps():
    """Inside a scan (as in the loop): after 7 inserts of 2 rows into capacity 6, the last 6 ids remain."""
    st = replay.init(6, OBS, ACT)

    def body(s, ids):
        return replay.add(s, rows(ids)), None

    ids = jnp.arange(1, 15, dtype=jnp.float32).reshape(7, 2)
    st, _ = jax.lax.scan(body, st, ids)
    assert int(st.size) == 6 and int(st.insert_pos) == (14 % 6)
    # rows 13, 14 went to slots 0, 1; 9..12 sit in slots 2..5
    assert_rows_consistent(st.data, np.array([13, 14, 9, 10, 11, 12]))


def test_sampling_never_returns_unwritten_slots():
    st = replay.init(32, OBS, ACT)
    st = replay.add(st, rows(np.arange(1, 5)))
    st = replay.add(st, rows(np.arange(5, 9)))  # 8 of 32 slots written (ids 1..8; unwritten rows hold 0)
    sample = jax.jit(replay.sample, static_argnums=2)
    keys = jax.random.split(jax.random.PRNGKey(0), 200)
    batches = jax.vmap(lambda k: sample(st, k, 16))(keys)
    ids = np.asarray(batches.reward).ravel()
    assert set(ids.tolist()) <= set(range(1, 9)), "sampled an unwritten slot"
    assert set(ids.tolist()) == set(range(1, 9)), "some written rows are never sampled"
    # Rows come out whole (every field from the same slot).
    flat = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), batches)
    assert_rows_consistent(flat, ids)
    # Roughly uniform over the written rows: 3200 draws, 400 expected per id.
    counts = np.bincount(ids.astype(int), minlength=9)[1:]
    assert counts.min() > 300 and counts.max() < 500


def test_sampling_after_wrap_covers_the_whole_buffer():
    st = replay.init(8, OBS, ACT)
    for start in (1, 5, 9):
        st = replay.add(st, rows(np.arange(start, start + 4)))
    batch = replay.sample(st, jax.random.PRNGKey(1), 4000)
    assert set(np.asarray(batch.reward).astype(int).tolist()) == {5, 6, 7, 8, 9, 10, 11, 12}


def test_add_refuses_capacity_not_multiple_of_insert_size():
    st = replay.init(10, OBS, ACT)
    with pytest.raises(ValueError, match="multiple"):
        replay.add(st, rows([1, 2, 3, 4]))
    replay.add(st, rows([1, 2, 3, 4, 5]))  # 10 % 5 == 0 is fine


@pytest.mark.parametrize(
    "buffer_size, num_envs, expected",
    [(10, 4, 12), (12, 4, 12), (13, 4, 16), (1, 8, 8), (10, 1, 10), (1_000_000, 32, 1_000_000), (100, 3, 102)],
)
def test_config_buffer_capacity_rounds_up_to_multiple_of_num_envs(buffer_size, num_envs, expected):
    cap = Config(buffer_size=buffer_size, num_envs=num_envs).buffer_capacity
    assert cap == expected
    assert cap % num_envs == 0 and cap >= buffer_size


@pytest.mark.parametrize("buffer_size, num_envs", [(10, 4), (7, 3)])
def test_rounded_capacity_accepts_num_envs_inserts_and_wraps_exactly(buffer_size, num_envs):
    cap = Config(buffer_size=buffer_size, num_envs=num_envs).buffer_capacity
    st = replay.init(cap, OBS, ACT)
    add = jax.jit(replay.add)
    for i in range(cap // num_envs):
        st = add(st, rows(np.full(num_envs, i + 1)))
    assert int(st.insert_pos) == 0 and int(st.size) == cap


@pytest.mark.parametrize("num_envs", [1, 4, 96])
def test_buffer_per_env_sets_the_capacity_per_env_whatever_buffer_size_says(num_envs):
    """--buffer-per-env R: capacity R x num_envs (parallel recipes size the buffer per env); 0 leaves --buffer-size."""
    config = Config(num_envs=num_envs, buffer_size=7, buffer_per_env=50)
    assert config.buffer_capacity == 50 * num_envs
    assert Config(num_envs=num_envs, buffer_size=7).buffer_capacity == -(-7 // num_envs) * num_envs
