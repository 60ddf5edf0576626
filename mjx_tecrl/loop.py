"""`make_train(config, env)`: the pure, jittable training program (purejaxrl style).

One iteration: the actor acts in every env, the envs step (vmapped, auto-reset in program), the
transitions go into the on-device ring buffer, then `updates_per_iter` learner updates run. A chunk
is a `lax.scan` over iterations; nothing leaves the device inside it.

Non-finite tracking: every iteration reduces the observations the actor saw and the parameters after its
updates to one "non-finite" boolean each; with the per-iteration learner metrics (losses, gradient norms)
they become, per chunk, `diag/nonfinite/<quantity>`: the first iteration of the chunk at which that
quantity was NaN or inf, or -1 (see `mjx_tecrl.health` for the host side).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from mjx_tecrl import episodes, rollout
from mjx_tecrl import replay as replay_lib
from mjx_tecrl.config import Config, Hyperparams
from mjx_tecrl.health import NONFINITE_PREFIX
from mjx_tecrl.learner import Learner, LearnerState
from mjx_tecrl.types import normalizer_update


@struct.dataclass
class TrainState:
    learner: LearnerState
    replay: replay_lib.ReplayState
    env: rollout.EnvState
    key: jax.Array
    iteration: jax.Array  # int32 env iterations done (env steps = iteration * num_envs, on the host)


@dataclass(frozen=True)
class TrainFns:
    """The pure functions of one training configuration. Jit them at the edge (see `run.py`)."""

    config: Config
    env: Any
    learner: Learner
    chunk_iters: int  # iterations per chunk (eval_every / num_envs, at least 1)
    warmup_iters: int  # iterations of uniform random actions (learning_starts / num_envs)

    # --- state -------------------------------------------------------------------------------
    def init(self, key: jax.Array, hyperparams: Hyperparams | None = None) -> TrainState:
        """A fresh training state for `key` (hyperparams default to the config's).

        Built under jit so that no two leaves share a buffer (brax aliases qpos and q when eager),
        which donation would refuse.
        """
        if hyperparams is None:
            hyperparams = self.config.hyperparams()
        return self._jit_init(key, hyperparams)

    @cached_property
    def _jit_init(self):
        return jax.jit(self._init)  # one wrapper per TrainFns, so repeated inits reuse the compile

    def _init(self, key: jax.Array, hyperparams: Hyperparams) -> TrainState:
        c = self.config
        key, k_learner, k_env = jax.random.split(key, 3)
        return TrainState(
            learner=self.learner.init(k_learner, self.env.observation_size, hyperparams),
            replay=replay_lib.init(c.buffer_capacity, self.env.observation_size, self.env.action_size),
            env=rollout.reset(self.env, k_env, c.num_envs),
            key=key,
            iteration=jnp.zeros((), jnp.int32),
        )

    # --- one iteration -----------------------------------------------------------------------
    def _act_and_store(self, ts: TrainState, key: jax.Array, random_actions):
        """Act in every env, step them, store the transitions. `random_actions` (a bool, or traced): U[-1, 1]
        actions instead of the policy's (the warm-up)."""
        k_act, k_reset = jax.random.split(key)
        c = self.config
        obs = ts.env.sim.obs  # [N, obs_dim]
        uniform = lambda: jax.random.uniform(k_act, (c.num_envs, self.env.action_size), minval=-1.0, maxval=1.0)  # noqa: E731
        policy = lambda: self.learner.sample_action(ts.learner.actor_params, ts.learner, obs, k_act)[0]  # noqa: E731
        if isinstance(random_actions, bool):
            action = uniform() if random_actions else policy()
        else:
            action = jnp.where(random_actions, uniform(), policy())
        env_state, transition, stats, valid = rollout.step_with_mask(
            self.env, ts.env, action, k_reset, c.episode_length
        )
        learner = ts.learner
        checks = {"observations": ~_all_finite(obs)}
        if c.normalize_obs:
            learner = learner.replace(obs_normalizer=normalizer_update(learner.obs_normalizer, obs))
            checks["obs_normalizer"] = ~_all_finite(learner.obs_normalizer)
        ts = ts.replace(
            learner=learner,
            replay=replay_lib.add(ts.replay, transition, valid),
            env=env_state,
            iteration=ts.iteration + 1,
        )
        return ts, stats, checks

    def _updates(self, learner: LearnerState, replay, key: jax.Array):
        """`updates_per_iter` updates as a static schedule: blocks of `policy_delay`, actor on the first."""
        c = self.config

        def block(ls: LearnerState, block_key: jax.Array):
            keys = jax.random.split(block_key, 2 * c.policy_delay)
            per_update = []
            for j in range(c.policy_delay):
                if c.n_step > 1:
                    batch = replay_lib.sample_steps(replay, keys[2 * j], c.batch_size, c.n_step, c.num_envs)
                else:
                    batch = replay_lib.sample(replay, keys[2 * j], c.batch_size)
                ls, m = self.learner.update(ls, batch, keys[2 * j + 1], update_actor=(j == 0))
                per_update.append(m)
            # Actor-side metrics come from the first update; critic-side ones average over the block.
            merged = dict(per_update[0])
            for k in per_update[-1]:
                merged[k] = jnp.mean(jnp.stack([m[k] for m in per_update]))
            return ls, merged

        blocks = jax.random.split(key, c.updates_per_iter // c.policy_delay)
        learner, metrics = jax.lax.scan(block, learner, blocks)
        return learner, jax.tree.map(jnp.mean, metrics)

    def iteration(self, ts: TrainState, warm):
        """One iteration; returns (state, (metrics, (episode stats, non-finite checks))).

        `warm` (a bool, or traced in the chunk program): a warm-up iteration, uniform random actions and no updates
        (its metrics zeros). Both kinds split the key as they always have (a warm-up iteration two ways, a training
        one three), so a run's random streams do not depend on which program stepped it.
        """
        warm = jnp.asarray(warm)
        two, three = jax.random.split(ts.key), jax.random.split(ts.key, 3)
        key, k_step = jnp.where(warm, two[0], three[0]), jnp.where(warm, two[1], three[1])
        ts, stats, checks = self._act_and_store(ts.replace(key=key), k_step, warm)
        updates = self._traced_once(self._updates)
        shapes = jax.eval_shape(updates, ts.learner, ts.replay, three[2])[1]
        no_updates = lambda learner, *_: (learner, jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), shapes))  # noqa: E731
        learner, metrics = jax.lax.cond(warm, no_updates, updates, ts.learner, ts.replay, three[2])
        checks.update(_param_checks(learner))
        return ts.replace(learner=learner), (metrics, (stats, checks))

    @staticmethod
    def _traced_once(fn):
        """`fn` as a nested jit: a branch of `lax.cond` whose outputs' shapes were asked for first (`eval_shape`)
        reuses that trace instead of tracing `fn` again (the second run, whose compile the cache skips, is mostly
        tracing). XLA inlines it."""
        return jax.jit(fn)

    def train_iteration(self, ts: TrainState, _=None):
        return self.iteration(ts, False)

    def warmup_iteration(self, ts: TrainState, _=None):
        """A warm-up iteration alone, with no learner in its program (the alignment test's act-step-store)."""
        key, k_step = jax.random.split(ts.key)
        ts, stats, _ = self._act_and_store(ts.replace(key=key), k_step, random_actions=True)
        return ts, stats

    # --- chunks (what the host calls) ---------------------------------------------------------
    def run_chunk(
        self, ts: TrainState, num_iters: jax.Array | int | None = None, warm: jax.Array | bool = False
    ) -> tuple[TrainState, dict[str, jax.Array]]:
        """`chunk_iters` iterations, of which only the first `num_iters` (traced; default all) run: the host ends a
        run within one iteration of `total_steps` without compiling a shorter chunk. With `warm` (traced) they are
        warm-up iterations (`iteration`): the warm-up runs in this program, so a run compiles the physics once for
        training and warm-up alike (docs/performance.md, "Where the first compile goes").

        Returns means over the iterations that ran (spec §8 names), the chunk's count of diverged env steps
        (`train/diverged_envs`) and its non-finite report (`diag/nonfinite/*`, see above).
        """
        n = self.chunk_iters if num_iters is None else num_iters
        iteration = self._traced_once(self.iteration)
        shapes = jax.eval_shape(iteration, ts, warm)[1]
        skipped = jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), shapes)  # no metrics, episodes or flags

        def body(ts: TrainState, i: jax.Array):
            return jax.lax.cond(i < n, iteration, lambda s, _: (s, skipped), ts, warm)

        ts, (metrics, (stats, checks)) = jax.lax.scan(body, ts, jnp.arange(self.chunk_iters))
        ran = jnp.arange(self.chunk_iters) < n
        count = jnp.maximum(jnp.sum(ran), 1).astype(jnp.float32)
        out = {k: jnp.sum(jnp.where(ran, v, 0.0)) / count for k, v in metrics.items()}
        out.update(_episode_metrics(stats))
        flags = {name: ran & ~jnp.isfinite(v) for name, v in metrics.items()} | checks  # each [chunk_iters] bool
        out.update({NONFINITE_PREFIX + name: _first_true(f) for name, f in flags.items()})
        return ts, out

    def warmup_chunks(self) -> list[int]:
        """The warm-up as chunks: the iterations of each (`warmup_iters` in all; none without a warm-up)."""
        full, rest = divmod(self.warmup_iters, self.chunk_iters)
        return [self.chunk_iters] * full + ([rest] if rest else [])

    def warmup(self, ts: TrainState) -> tuple[TrainState, dict[str, jax.Array]]:
        """`warmup_iters` iterations of uniform random actions, no updates: the chunk program in its warm mode, as
        the host runs it. Returns the warm-up's episode counts (`train/episodes`, `train/diverged_envs`)."""
        counts = jnp.asarray(self.warmup_chunks() or [0], jnp.int32)
        ts, out = jax.lax.scan(lambda s, n: self.run_chunk(s, n, True), ts, counts)
        return ts, {k: jnp.sum(out[k]) for k in ("train/episodes", "train/diverged_envs")}

    def train(self, key: jax.Array, num_chunks: int) -> tuple[TrainState, dict[str, jax.Array]]:
        """Pure whole run: init, warm-up, `num_chunks` chunks (one program); metrics stacked per chunk. vmap over
        keys."""
        warm = self.warmup_chunks()
        iters = jnp.asarray(warm + [self.chunk_iters] * num_chunks, jnp.int32)
        is_warm = jnp.arange(len(warm) + num_chunks) < len(warm)
        ts, out = jax.lax.scan(lambda s, x: self.run_chunk(s, *x), self.init(key), (iters, is_warm))
        return ts, jax.tree.map(lambda x: x[len(warm) :], out)

    # --- evaluation ----------------------------------------------------------------------------
    def evaluate(self, learner: LearnerState, key: jax.Array) -> dict[str, jax.Array]:
        """Deterministic policy (tanh of the mean) over `num_eval_envs` full episodes.

        Runs on the nominal env: with training-time domain randomisation, `self.env.nominal` is the task itself.
        """
        c = self.config
        env = getattr(self.env, "nominal", self.env)
        sim = rollout.vmap_envs(env.reset, jax.random.split(key, c.num_eval_envs))
        ret, length, _, lost = episodes.evaluate_episodes(
            env, lambda obs, _: self.learner.deterministic_action(learner, obs), sim, c.episode_length
        )
        return {
            "eval/episode_return": jnp.mean(ret),
            "eval/episode_return_std": jnp.std(ret),
            "eval/episode_return_min": jnp.min(ret),
            "eval/episode_return_max": jnp.max(ret),
            "eval/episode_length": jnp.mean(length.astype(jnp.float32)),
            "eval/diverged_episodes": jnp.sum(lost.astype(jnp.float32)),
        }


def _episode_metrics(stats: rollout.EpisodeStats) -> dict[str, jax.Array]:
    count = jnp.sum(stats.count)
    return {
        "train/episodes": count,
        "train/episode_return": jnp.sum(stats.return_sum) / jnp.maximum(count, 1.0),
        "train/episode_length": jnp.sum(stats.length_sum) / jnp.maximum(count, 1.0),
        "train/diverged_envs": jnp.sum(stats.diverged),
        "diag/reward_abs_max": jnp.max(stats.reward_abs_max),
    }


def _all_finite(tree) -> jax.Array:
    """One boolean: every element of every leaf is finite (one fused reduction per leaf)."""
    leaves = jax.tree.leaves(tree)
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves])) if leaves else jnp.ones((), bool)


def _param_checks(learner: LearnerState) -> dict[str, jax.Array]:
    """Non-finite flags of the parameters after an iteration's updates (targets follow them by Polyak)."""
    checks = {
        "actor_params": ~_all_finite(learner.actor_params),
        "reward_critic_params": ~_all_finite(learner.reward_critic_params),
        "log_alpha": ~jnp.isfinite(learner.log_alpha),
    }
    if learner.entropy_critic_params is not None:
        checks["entropy_critic_params"] = ~_all_finite(learner.entropy_critic_params)
    return checks


def _first_true(flags: jax.Array) -> jax.Array:
    """Index of the first True in a [T] bool vector, or -1 (int32)."""
    return jnp.where(jnp.any(flags), jnp.argmax(flags), -1).astype(jnp.int32)


def make_train(config: Config, env) -> TrainFns:
    """Build the pure training functions for `config` on `env` (a registry env)."""
    if config.randomize:  # training-time domain randomisation: new physics per env at every reset
        from mjx_tecrl.envs import perturb

        env = perturb.randomized(env, config.randomize)
    learner = Learner.from_config(config, env.action_size)
    chunk_iters = max(config.eval_every // config.num_envs, 1)
    warmup_iters = -(-config.learning_starts // config.num_envs)
    return TrainFns(config, env, learner, chunk_iters, warmup_iters)
