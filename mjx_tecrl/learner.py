"""Learner state and one gradient iteration of DSAC-E / DSAC-E w/o TEC / DSAC-T / SAC (spec §2.6, §3.3)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from mjx_tecrl import distributions, losses
from mjx_tecrl.config import VARIANTS, Config, Hyperparams, Variant
from mjx_tecrl.networks import Networks, make_networks
from mjx_tecrl.types import NormalizerState, Steps, Transition, normalize, normalizer_init

Params = Any
_adam = optax.scale_by_adam()  # PyTorch defaults; the learning rate is applied from the traced Hyperparams


@struct.dataclass
class LearnerState:
    """Online and target parameters, optimiser moments, temperature and running statistics."""

    actor_params: Params
    actor_target_params: Params
    reward_critic_params: Params  # twin-stacked [2, ...]
    reward_critic_target_params: Params
    entropy_critic_params: Params  # [n, ...]; None for dsac-t and sac
    entropy_critic_target_params: Params
    log_alpha: jax.Array
    actor_opt_state: optax.OptState
    reward_critic_opt_state: optax.OptState
    entropy_critic_opt_state: optax.OptState
    temperature_opt_state: optax.OptState
    critic_std_running_mean: jax.Array  # [2], sentinel -1 until the first batch
    obs_normalizer: NormalizerState
    hyperparams: Hyperparams
    step: jax.Array  # gradient iterations done (int32)


@struct.dataclass
class Returns:
    """What the critic targets need from a replay sample (`Learner._returns`); obs not normalised."""

    obs: jax.Array
    action: jax.Array
    reward: jax.Array  # scaled (and discounted over the n steps)
    next_obs: jax.Array  # where the bootstrap is taken
    discount: jax.Array  # gamma^m (1 - terminated): the bootstrap's weight
    entropy_between: jax.Array | None  # sum_{0<k<m} gamma^k (-log pi_target(a_k|s_k)); None for one step
    steps_between: jax.Array | None  # sum_{0<k<m} gamma^k: the horizon head's share of those steps


def _adam_step(params, grads, opt_state, lr, weight_decay=0.0):
    """One Adam step with a traced learning rate; with `weight_decay`, AdamW's decoupled decay
    p <- p - lr (adam_direction + weight_decay p) (Loshchilov & Hutter; PyTorch's AdamW)."""
    direction, opt_state = _adam.update(grads, opt_state)
    return jax.tree.map(lambda p, d: p - lr * (d + weight_decay * p), params, direction), opt_state


@dataclass(frozen=True)
class Learner:
    """The static part of the learner: networks and the variant switches."""

    networks: Networks
    algo: str
    critic_loss: str
    normalize_obs: bool
    entropy_baseline: bool = False  # `--entropy-baseline`: Q_e = the head's deviation + D mean(-log pi)

    @classmethod
    def from_config(cls, config: Config, action_dim: int) -> Learner:
        nets = make_networks(
            action_dim,
            config.hidden_sizes,
            config.twin_entropy_critic,
            critic_layer_norm=config.critic_layer_norm,
            horizon=config.variant.trajectory_temperature and config.budget_horizon == "lived",
            actor_layer_norm=config.actor_layer_norm,
            matmul_dtype=config.matmul_dtype,
        )
        return cls(nets, config.algo, config.critic_loss, config.normalize_obs, config.entropy_baseline)

    @property
    def variant(self) -> Variant:
        """The algorithm's switches (`config.VARIANTS`)."""
        return VARIANTS[self.algo]

    @property
    def uses_entropy_critic(self) -> bool:
        return self.variant.entropy_critic

    def init(self, key: jax.Array, obs_dim: int, hyperparams: Hyperparams) -> LearnerState:
        """Fresh state; targets are copies (not aliases) so the state can be donated."""
        actor, reward, entropy = self.networks.init(key, obs_dim)
        if not self.uses_entropy_critic:
            entropy = None
        log_alpha = jnp.array(hyperparams.init_log_alpha, jnp.float32, copy=True)  # no alias: donation
        copy = lambda tree: jax.tree.map(jnp.copy, tree)  # noqa: E731
        return LearnerState(
            actor_params=actor,
            actor_target_params=copy(actor),
            reward_critic_params=reward,
            reward_critic_target_params=copy(reward),
            entropy_critic_params=entropy,
            entropy_critic_target_params=copy(entropy),
            log_alpha=log_alpha,
            actor_opt_state=_adam.init(actor),
            reward_critic_opt_state=_adam.init(reward),
            entropy_critic_opt_state=_adam.init(entropy),
            temperature_opt_state=_adam.init(log_alpha),
            critic_std_running_mean=-jnp.ones((2,), jnp.float32),
            obs_normalizer=normalizer_init(obs_dim),
            hyperparams=hyperparams,
            step=jnp.zeros((), jnp.int32),
        )

    # --- policy -----------------------------------------------------------------------------
    def normalize(self, state: LearnerState, obs: jax.Array) -> jax.Array:
        return normalize(state.obs_normalizer, obs) if self.normalize_obs else obs

    def sample_action(self, params, state: LearnerState, obs, key) -> tuple[jax.Array, jax.Array]:
        """(action, log prob) for raw observations (normalised here, once)."""
        return self._sample(params, self.normalize(state, obs), key)

    def _sample(self, params, normalized_obs, key) -> tuple[jax.Array, jax.Array]:
        """(action, log prob) for observations already normalised (the update's, which the critics share)."""
        mean, log_std = self.networks.actor.apply(params, normalized_obs)
        return distributions.sample(key, mean, log_std)

    def deterministic_action(self, state: LearnerState, obs: jax.Array) -> jax.Array:
        mean, _ = self.networks.actor.apply(state.actor_params, self.normalize(state, obs))
        return distributions.mode(mean)

    # --- one gradient iteration --------------------------------------------------------------
    def update(
        self, state: LearnerState, batch: Transition | Steps, key: jax.Array, update_actor: bool
    ) -> tuple[LearnerState, dict[str, jax.Array]]:
        """Critic step always; actor, temperature and Polyak targets when `update_actor` (spec §2.6).

        `batch`: one-step transitions, or n consecutive steps per sample for n-step targets (`_returns`).

        All gradients use the pre-update parameters. `update_actor` is static (spec style note 6).
        """
        key_next, key_z, key_new = jax.random.split(key, 3)
        hp = state.hyperparams
        nets = self.networks
        alpha = jnp.exp(state.log_alpha)
        ret = self._returns(state, batch, jax.random.fold_in(key_next, 1))
        action, reward, discount, entropy_between = ret.action, ret.reward, ret.discount, ret.entropy_between
        obs = self.normalize(state, ret.obs)  # [B, obs_dim]
        next_obs = self.normalize(state, ret.next_obs)

        # Next action from the TARGET policy, shared by the reward and entropy targets (spec §3.3).
        next_action, next_log_prob = self._sample(state.actor_target_params, next_obs, key_next)
        q_next, std_next = nets.reward_critics(state.reward_critic_target_params, next_obs, next_action)
        soft = self.variant.soft_reward
        entropy_bonus = -alpha * next_log_prob if soft else jnp.zeros_like(next_log_prob)
        if soft and entropy_between is not None:  # the soft return's entropy of the steps inside the n
            reward = reward + alpha * entropy_between

        # Reward critics (PEV).
        if not self.variant.distributional:
            y = losses.sac_critic_targets(q_next, reward, discount, entropy_bonus)

            def reward_loss_fn(params):
                q, std = nets.reward_critics(params, obs, action)
                return losses.sac_critic_loss(q, y), (q, std, state.critic_std_running_mean)
        else:
            z = jnp.clip(jax.random.normal(key_z, q_next.shape), -3.0, 3.0)  # [2, B]
            y_q, y_z = losses.reward_critic_targets(q_next, std_next, z, reward, discount, entropy_bonus)
            loss_form = (
                losses.distributional_critic_loss_huber
                if self.critic_loss == "huber"
                else losses.distributional_critic_loss
            )

            def reward_loss_fn(params):
                q, std = nets.reward_critics(params, obs, action)
                running = losses.update_critic_std_running_mean(
                    state.critic_std_running_mean, std, hp.tau
                )  # updated BEFORE the clip bound and weight use it
                return loss_form(q, std, y_q, y_z, running, hp.xi, hp.epsilon), (q, std, running)

        (loss_r, (q, std, std_running)), grad_r = jax.value_and_grad(reward_loss_fn, has_aux=True)(
            state.reward_critic_params
        )
        reward_params, reward_opt = _adam_step(
            state.reward_critic_params, grad_r, state.reward_critic_opt_state, hp.critic_lr, hp.weight_decay
        )
        new = state.replace(
            reward_critic_params=reward_params,
            reward_critic_opt_state=reward_opt,
            critic_std_running_mean=std_running,
            step=state.step + 1,
        )
        metrics = {
            "train/loss_reward_critic": loss_r,
            "train/q_r": jnp.mean(q),
            "train/critic_std": jnp.mean(std),
            "train/alpha": alpha,
            "diag/grad_norm_reward_critic": optax.tree.norm(grad_r),
        }
        if isinstance(batch, Steps):
            metrics["diag/n_step_mean"] = jnp.mean(jnp.sum(batch.included, axis=0))  # steps in the return

        # Entropy critic (PIS).
        if self.uses_entropy_critic:
            q_e_next, horizon_next = nets.entropy_critics_and_horizon(
                state.entropy_critic_target_params, next_obs, next_action
            )
            y_e = losses.entropy_critic_target(next_log_prob, jnp.min(q_e_next, axis=0), discount)
            if entropy_between is not None:
                y_e = y_e + entropy_between
            if self.entropy_baseline:  # the head learns the deviation: -log pi - b per step the target counts
                b = losses.entropy_baseline(next_log_prob)
                y_e = y_e - b * (discount if ret.steps_between is None else discount + ret.steps_between)
            y_h = None
            if horizon_next is not None:
                y_h = losses.horizon_target(jnp.min(horizon_next, axis=0), discount, hp.gamma)
                if ret.steps_between is not None:
                    y_h = y_h + ret.steps_between

            def entropy_loss_fn(params):
                q_e, horizon = nets.entropy_critics_and_horizon(params, obs, action)
                loss = losses.entropy_critic_loss(q_e, y_e)
                if horizon is not None:
                    loss = loss + losses.entropy_critic_loss(horizon, y_h)
                if self.entropy_baseline:  # the Q_e the head stands for (logged)
                    q_e = losses.baseline_trajectory_entropy(q_e, next_log_prob, horizon, hp.gamma)
                return loss, q_e

            (loss_e, q_e), grad_e = jax.value_and_grad(entropy_loss_fn, has_aux=True)(state.entropy_critic_params)
            entropy_params, entropy_opt = _adam_step(
                state.entropy_critic_params, grad_e, state.entropy_critic_opt_state, hp.critic_lr, hp.weight_decay
            )
            new = new.replace(entropy_critic_params=entropy_params, entropy_critic_opt_state=entropy_opt)
            metrics["train/loss_entropy_critic"] = loss_e
            metrics["train/q_e"] = jnp.mean(q_e)
            metrics["diag/grad_norm_entropy_critic"] = optax.tree.norm(grad_e)

        if update_actor:
            new, actor_metrics = self._actor_temperature_targets(state, new, obs, key_new, alpha)
            metrics.update(actor_metrics)
        return new, metrics

    def _returns(self, state: LearnerState, batch: Transition | Steps, key: jax.Array) -> Returns:
        """The critic targets' inputs from a replay sample (`Returns`).

        One step (a `Transition`): the scaled reward and gamma (1 - terminated); truncation keeps its bootstrap
        (spec §2.7). n steps (`Steps`, m of them included): reward = scale * sum_{k<m} gamma^k r_k, the bootstrap
        from the last included step's next_obs with discount gamma^m (1 - its terminated), and entropy_between =
        sum_{0<k<m} gamma^k (-log pi_target(a_k|s_k)), a_k drawn from the target policy (spec §3.2's Q_e target over
        n steps; the soft return's entropy for dsac-t and sac); None for one step.
        """
        hp = state.hyperparams
        if isinstance(batch, Transition):
            discount = hp.gamma * (1.0 - batch.terminated)
            reward = batch.reward * hp.reward_scale
            return Returns(batch.obs, batch.action, reward, batch.next_obs, discount, None, None)
        rows, included = batch.rows, batch.included  # [n, B, ...], [n, B]
        powers = hp.gamma ** jnp.arange(included.shape[0], dtype=jnp.float32)[:, None]  # [n, 1]
        reward = hp.reward_scale * jnp.sum(included * powers * rows.reward, axis=0)
        last = jnp.sum(included, axis=0).astype(jnp.int32) - 1  # [B]: index of the last included step

        def at_last(x):
            return jnp.take_along_axis(x, last.reshape((1, -1) + (1,) * (x.ndim - 2)), axis=0)[0]

        discount = hp.gamma ** (last + 1).astype(jnp.float32) * (1.0 - at_last(rows.terminated))
        _, between_log_prob = self.sample_action(state.actor_target_params, state, rows.obs[1:], key)  # [n - 1, B]
        entropy_between = jnp.sum(included[1:] * powers[1:] * -between_log_prob, axis=0)
        steps_between = jnp.sum(included[1:] * powers[1:], axis=0)
        return Returns(
            rows.obs[0], rows.action[0], reward, at_last(rows.next_obs), discount, entropy_between, steps_between
        )

    def _actor_temperature_targets(self, old, new, obs, key, alpha):
        """PIM + TUP from the pre-update state `old`, applied to `new`; then Polyak (spec §3.3)."""
        hp = old.hyperparams
        nets = self.networks

        def actor_loss_fn(actor_params):
            action, log_prob = self._sample(actor_params, obs, key)  # obs: normalised by update
            q_r, _ = nets.reward_critics(old.reward_critic_params, obs, action)
            q_e = horizon = None
            if self.uses_entropy_critic:
                q_e, horizon = nets.entropy_critics_and_horizon(old.entropy_critic_params, obs, action)
                q_e = jnp.min(q_e, axis=0)
                if self.entropy_baseline:  # the deviation plus the current policy's mean entropy over D steps
                    q_e = losses.baseline_trajectory_entropy(q_e, log_prob, jnp.min(horizon, axis=0), hp.gamma)
            return losses.actor_loss(log_prob, q_r, q_e, alpha), (log_prob, q_e, horizon)

        (loss_pi, (log_prob, q_e, horizon)), grad_pi = jax.value_and_grad(actor_loss_fn, has_aux=True)(old.actor_params)
        action_dim = self.networks.actor.action_dim  # static: H0 is a constant of the program
        h0 = losses.target_entropy(action_dim)
        if self.variant.trajectory_temperature:
            step_budget = hp.rho * h0  # the per-step entropy the budget asks for
            if horizon is None:
                budget = losses.entropy_budget(hp.rho, action_dim, hp.gamma)
                steps = 1.0 / (1.0 - hp.gamma)
            else:  # per sample: rho H0 over the (discounted) steps still to come at (s, a)
                d = jnp.min(horizon, axis=0)
                d_in_range = losses.horizon_in_range(d, hp.gamma)
                budget = losses.entropy_budget_lived(hp.rho, action_dim, d, hp.gamma)
                steps = 1.0 + jnp.mean(d_in_range)
            floor_gap = losses.entropy_floor_gap(log_prob, step_budget, hp.entropy_floor, steps)
            temp_loss_fn = lambda la: losses.temperature_loss_trajectory(la, log_prob, q_e, budget, floor_gap)  # noqa: E731
        else:
            temp_loss_fn = lambda la: losses.temperature_loss_per_step(la, log_prob, h0)  # noqa: E731
        loss_alpha, grad_alpha = jax.value_and_grad(temp_loss_fn)(old.log_alpha)

        actor_params, actor_opt = _adam_step(
            old.actor_params, grad_pi, old.actor_opt_state, hp.actor_lr, hp.weight_decay
        )
        log_alpha, temp_opt = _adam_step(old.log_alpha, grad_alpha, old.temperature_opt_state, hp.alpha_lr)
        new = new.replace(
            actor_params=actor_params,
            actor_opt_state=actor_opt,
            log_alpha=log_alpha,
            temperature_opt_state=temp_opt,
            actor_target_params=losses.polyak(old.actor_target_params, actor_params, hp.tau),
            reward_critic_target_params=losses.polyak(
                old.reward_critic_target_params, new.reward_critic_params, hp.tau
            ),
            entropy_critic_target_params=losses.polyak(
                old.entropy_critic_target_params, new.entropy_critic_params, hp.entropy_critic_tau
            ),
        )
        metrics = {
            "train/loss_actor": loss_pi,
            "train/loss_temperature": loss_alpha,
            "train/policy_entropy": -jnp.mean(log_prob),
            "diag/grad_norm_actor": optax.tree.norm(grad_pi),
            "diag/grad_norm_temperature": jnp.abs(grad_alpha),
        }
        if self.uses_entropy_critic:
            metrics["train/trajectory_entropy"] = jnp.mean(-log_prob + q_e)
        if self.variant.trajectory_temperature:
            metrics["train/entropy_budget"] = jnp.mean(budget)
            metrics["train/step_entropy_budget"] = step_budget
            trajectory_gap = jnp.mean(-log_prob + q_e - budget)
            metrics["diag/entropy_floor_binds"] = (floor_gap < trajectory_gap).astype(jnp.float32)
            # the floor raised alpha: its gap taken, and negative (binds also counts one that only slows the fall)
            metrics["diag/entropy_floor_raises"] = (floor_gap < jnp.minimum(trajectory_gap, 0.0)).astype(jnp.float32)
            if horizon is not None:  # the D the budget uses, and how often the head left D's range
                metrics["diag/horizon"] = jnp.mean(d_in_range)
                metrics["diag/horizon_out_of_range"] = jnp.mean(d_in_range != d)
        else:
            metrics["train/target_entropy"] = h0
        return new, metrics
