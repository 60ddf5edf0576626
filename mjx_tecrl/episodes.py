"""A policy's episodes: the one evaluation program that the training loop, `mjx_tecrl.evaluate` and the
robustness study (`mjx_tecrl.study`) share, and the view of a learner state that a policy reads."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from mjx_tecrl import rollout


def policy_view(learner: Any) -> Any:
    """The learner state with only what the deterministic policy reads (actor and normaliser), so that runs
    of different algorithms but the same networks share one compiled program."""
    keep = ("actor_params", "obs_normalizer")
    return learner.replace(**{f: None for f in learner.__dataclass_fields__ if f not in keep})


def evaluate_episodes(env, policy, sim, episode_length: int):
    """Run `policy(obs, t) -> action` (t: the step's index, for a stochastic policy's key) in the batch of envs
    `sim` (fresh from `env.reset`) to the end of every episode or the time limit, whichever comes first (a
    `while_loop`: it stops once all have ended).

    A diverged episode (`rollout.diverged`: non-finite or huge physics) ends there, its last reward left out.
    Returns each episode's return [n], length [n], whether it ended before the time limit (terminated or
    diverged) [n], and whether it diverged [n]. Shared by training-time evaluation, `mjx_tecrl.evaluate` and
    the robustness study (`mjx_tecrl.study`).
    """
    n = sim.obs.shape[0]
    no = jnp.zeros((n,), bool)
    init = (sim, jnp.zeros((n,), jnp.float32), jnp.zeros((n,), jnp.int32), jnp.ones((n,), bool), no)

    def cond(carry):
        _, _, length, alive, _ = carry
        return jnp.any(alive) & (jnp.max(length) < episode_length)

    def body(carry):
        sim, ret, length, alive, lost = carry
        nxt = rollout.vmap_envs(env.step, sim, policy(sim.obs, jnp.max(length)))
        bad = rollout.diverged(nxt)
        ret = ret + jnp.where(alive & ~bad, nxt.reward, 0.0)
        length = length + alive.astype(jnp.int32)
        lost = lost | (alive & bad)
        alive = alive & (nxt.done < 0.5) & ~bad
        return nxt, ret, length, alive, lost

    _, ret, length, alive, lost = jax.lax.while_loop(cond, body, init)
    return ret, length, ~alive, lost
