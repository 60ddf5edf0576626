"""Env groups (mjx_tecrl/rollout.py, `vmap_envs`): a batch of envs stepped as a `lax.map` over vmapped groups
gives `jax.vmap`'s values, and the group size follows ENV_GROUP."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from mjx_tecrl.envs import registry

from mjx_tecrl import rollout


@pytest.mark.parametrize(
    ("setting", "num_envs", "expected"),
    [
        (16, 256, 16),
        (16, 1000, 10),  # the largest divisor up to 16: static, equal groups
        (16, 10, 10),  # fewer envs than a group: one group
        (16, 16, 16),
        (16, 17, 17),  # a prime: no divisor from 8 to 16, so one group
        (16, 44, 11),
        (16, 28, 14),
        (16, 34, 34),  # 2 x 17: no divisor from 8 to 16, so one group
        (0, 256, 256),  # 0: one group
        (1, 4, 1),
    ],
)
def test_group_size(monkeypatch, setting, num_envs, expected):
    monkeypatch.setattr(rollout, "ENV_GROUP", setting)
    assert rollout.env_group(num_envs) == expected


def test_default_groups_on_cpus_only(monkeypatch):
    monkeypatch.setattr(rollout, "ENV_GROUP", None)
    on_cpu = jax.default_backend() == "cpu"
    assert rollout.env_group(256) == (rollout.GROUP_ON_CPU if on_cpu else 256)


def _count(jaxpr, name: str) -> int:
    n = 0
    for eqn in jaxpr.eqns:
        n += eqn.primitive.name == name
        for sub in jax.core.jaxprs_in_params(eqn.params):
            n += _count(sub, name)
    return n


def test_groups_are_a_map_with_vmap_values_and_any_leaf_shape(monkeypatch):
    """A pytree with scalars per env, matrices and an empty leaf (MJX states have them): same values, same
    shapes, and the traced program maps over the groups (it is not the plain vmap)."""

    def fn(state, action):
        return {"x": state["x"] * action.sum() + 1.0, "m": state["m"] @ state["m"], "empty": state["empty"] + 1}

    n = 12
    state = {
        "x": jnp.arange(n, dtype=jnp.float32),
        "m": jax.random.normal(jax.random.PRNGKey(0), (n, 3, 3)),
        "empty": jnp.zeros((n, 0)),
    }
    action = jax.random.normal(jax.random.PRNGKey(1), (n, 2))
    plain = jax.vmap(fn)(state, action)
    monkeypatch.setattr(rollout, "ENV_GROUP", 4)
    grouped = rollout.vmap_envs(fn, state, action)
    assert _count(jax.make_jaxpr(lambda s, a: rollout.vmap_envs(fn, s, a))(state, action).jaxpr, "scan") == 1
    for a, b in zip(jax.tree.leaves(grouped), jax.tree.leaves(plain), strict=True):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    monkeypatch.setattr(rollout, "ENV_GROUP", 0)
    assert _count(jax.make_jaxpr(lambda s, a: rollout.vmap_envs(fn, s, a))(state, action).jaxpr, "scan") == 0


# hopper's case is slow (60 s here): halfcheetah's has contacts too, and test_hopper_in_groups_matches_one_batch steps
# hopper in groups in the default run
@pytest.mark.parametrize("task", [pytest.param("hopper", marks=pytest.mark.slow), "halfcheetah"])
def test_each_group_computes_what_a_batch_of_its_size_computes(monkeypatch, task):
    """12 steps of 16 envs in contact, in groups of 4: each group's states equal, bit for bit, those of its 4 envs
    stepped as a batch of 4 alone. So a group size only picks which batch size's rounding a run gets."""
    env = registry.make(task)
    n, group, steps = 16, 4, 12
    keys = jax.random.split(jax.random.PRNGKey(0), n)
    actions = jax.random.uniform(jax.random.PRNGKey(1), (steps, n, env.action_size), minval=-1.0, maxval=1.0)

    @jax.jit
    def program(keys, actions):
        state = rollout.vmap_envs(env.reset, keys)
        step = lambda s, a: (rollout.vmap_envs(env.step, s, a),) * 2  # noqa: E731
        return jax.lax.scan(step, state, actions)[1].pipeline_state.qpos

    monkeypatch.setattr(rollout, "ENV_GROUP", group)
    grouped = program(keys, actions)
    monkeypatch.setattr(rollout, "ENV_GROUP", 0)
    alone = [program(keys[i : i + group], actions[:, i : i + group]) for i in range(0, n, group)]
    one_batch = program(keys, actions)
    assert float(jnp.max(jnp.abs(grouped[-1] - grouped[0]))) > 1e-3  # they moved
    np.testing.assert_array_equal(grouped, jnp.concatenate(alone, axis=1))
    assert float(jnp.max(jnp.abs(grouped - one_batch))) < 1e-2  # one batch of 16: another rounding, close


def test_hopper_in_groups_matches_one_batch(monkeypatch):
    """16 hoppers for 12 steps with contacts, auto-reset included (rollout.step), in groups of 4 against one
    batch: the same states up to float rounding (XLA fuses a group of 4 differently from a batch of 16)."""
    env = registry.make("hopper")
    n, steps = 16, 12
    actions = jax.random.uniform(jax.random.PRNGKey(1), (steps, n, env.action_size), minval=-1.0, maxval=1.0)

    def run(group):
        monkeypatch.setattr(rollout, "ENV_GROUP", group)

        @jax.jit
        def program(key, actions):
            state = rollout.reset(env, key, n)

            def body(s, xs):
                a, k = xs
                s, tr, _ = rollout.step(env, s, a, k, 5)  # a time limit of 5: resets inside the 12 steps
                return s, (s.sim.pipeline_state.qpos, tr.truncated)

            keys = jax.random.split(jax.random.PRNGKey(2), steps)
            return jax.lax.scan(body, state, (actions, keys))[1]

        return program(jax.random.PRNGKey(0), actions)

    one_qpos, one_truncated = run(0)
    grouped_qpos, grouped_truncated = run(4)
    assert float(jnp.sum(one_truncated)) == 2 * n  # every env reset twice
    assert float(jnp.max(jnp.abs(one_qpos[3] - one_qpos[0]))) > 1e-3  # the hoppers moved
    np.testing.assert_array_equal(grouped_truncated, one_truncated)
    np.testing.assert_allclose(grouped_qpos, one_qpos, atol=1e-4)
