"""The early-exit line search (envs/gym_base.py): MJX's scan-with-cond loop replaced while tracing a Gymnasium task by
a while_loop with the same cap. Same contract, same numbers on a contact task, scoped to the tracing thread."""

from __future__ import annotations

import threading

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from mjx_tecrl.envs import gym_base, registry
from mujoco.mjx._src import solver


def _toy(limit, max_iter):
    """A batched loop whose members converge after `limit` steps (or never): (value, steps taken)."""

    def cond(c):
        return c[1] < limit

    def body(c):
        return c[0] * 1.5 + 1.0, c[1] + 1

    return cond, body, max_iter


@pytest.mark.parametrize("max_iter", [1, 3, 50])
def test_capped_while_loop_keeps_the_scan_contract_under_vmap(max_iter):
    """Per member: the body while the condition holds, at most max_iter times; members that converge early
    stop early, as in MJX's `_while_loop_scan`."""
    limits = jnp.array([0, 1, 2, 5, 7, 1000])  # 1000: never converges, stopped by the cap

    def run(loop, limit):
        cond, body, cap = _toy(limit, max_iter)
        return loop(cond, body, (jnp.float32(0.5), jnp.int32(0)), cap)

    theirs = jax.vmap(lambda limit: run(solver._while_loop_scan, limit))(limits)
    ours = jax.vmap(lambda limit: run(gym_base._capped_while_loop, limit))(limits)
    np.testing.assert_array_equal(ours[1], np.minimum(np.asarray(limits), max_iter))  # steps taken
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_array_equal(a, b)


def _scans_of_length(jaxpr, length: int) -> int:
    """Scans of `length` steps anywhere in a jaxpr (sub-jaxprs included)."""
    count = 0
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "scan" and eqn.params["length"] == length:
            count += 1
        for sub in jax.core.jaxprs_in_params(eqn.params):
            count += _scans_of_length(sub, length)
    return count


def _traced_step(env, early_exit: bool, monkeypatch):
    monkeypatch.setattr(gym_base, "EARLY_EXIT_LINESEARCH", early_exit)
    state = env.reset(jax.random.PRNGKey(0))
    return jax.make_jaxpr(env.step)(state, jnp.zeros(env.action_size)).jaxpr


def test_the_switch_replaces_the_line_search_scan_and_only_while_tracing(monkeypatch):
    env = registry.make("hopper")
    ls_iterations = int(env.unwrapped.mj_model.opt.ls_iterations)
    assert ls_iterations == 50  # the v5 file's; the scan it replaces runs this many steps
    assert _scans_of_length(_traced_step(env, False, monkeypatch), ls_iterations) > 0
    assert _scans_of_length(_traced_step(env, True, monkeypatch), ls_iterations) == 0
    assert not gym_base.tracing_gymnasium_physics()  # MJX's own again after tracing


def _toy_loop_jaxpr():
    return jax.make_jaxpr(lambda x: solver._while_loop_scan(lambda v: v < 3, lambda v: v + 1, x, 5))(0).jaxpr


def test_another_thread_keeps_mjx_own_loop_while_one_traces_a_task(monkeypatch):
    """run.py traces the training chunk and the evaluation on two threads at once: a thread inside a Gymnasium
    trace changes nothing for the other (a module attribute swapped for the trace would leak into it)."""
    monkeypatch.setattr(gym_base, "EARLY_EXIT_LINESEARCH", True)
    inside, release = threading.Event(), threading.Event()

    def hold():
        with gym_base.gymnasium_physics():
            inside.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert inside.wait(30)
        assert not gym_base.tracing_gymnasium_physics()
        assert _scans_of_length(_toy_loop_jaxpr(), 5) == 1  # this thread: MJX's scan
    finally:
        release.set()
        holder.join()
    with gym_base.gymnasium_physics():
        assert _scans_of_length(_toy_loop_jaxpr(), 5) == 0  # inside: the early exit


def test_on_by_default_on_cpus_only(monkeypatch):
    monkeypatch.setattr(gym_base, "EARLY_EXIT_LINESEARCH", None)
    assert gym_base.early_exit_linesearch_on() == (jax.default_backend() == "cpu")
    monkeypatch.setattr(gym_base, "EARLY_EXIT_LINESEARCH", False)
    assert not gym_base.early_exit_linesearch_on()


def test_same_numbers_on_hopper_with_contacts(monkeypatch):
    """12 env steps of 8 hoppers (feet on the ground, random actions, so the Newton solver and its line search
    run every step): the early-exit program's states equal the scan's bit for bit."""
    env = registry.make("hopper")
    n, steps = 8, 12
    actions = jax.random.uniform(jax.random.PRNGKey(1), (steps, n, env.action_size), minval=-1.0, maxval=1.0)

    def rollout(early_exit):
        monkeypatch.setattr(gym_base, "EARLY_EXIT_LINESEARCH", early_exit)

        @jax.jit
        def run(keys, actions):
            state = jax.vmap(env.reset)(keys)
            step = jax.vmap(env.step)
            return jax.lax.scan(lambda s, a: (step(s, a), s.pipeline_state.qpos), state, actions)

        return run(jax.random.split(jax.random.PRNGKey(0), n), actions)

    scan_final, scan_qpos = rollout(False)
    exit_final, exit_qpos = rollout(True)
    assert float(jnp.max(jnp.abs(scan_qpos[-1] - scan_qpos[0]))) > 1e-3  # the hoppers moved
    assert float(jnp.max(jnp.abs(scan_final.pipeline_state._impl.efc_force))) > 0  # contact forces: a solve
    np.testing.assert_array_equal(exit_qpos, scan_qpos)
    for a, b in zip(jax.tree_util.tree_leaves(exit_final), jax.tree_util.tree_leaves(scan_final), strict=True):
        np.testing.assert_array_equal(a, b)
