"""Every target and loss of the spec, one function each; pure, with explicit arguments.

Shapes: B is the batch, critic outputs carry a leading twin axis [2, B] (entropy critics [n, B]).
Variant switches (`algo`) are Python values; they pick terms, never shapes of the state.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

sg = jax.lax.stop_gradient


def target_entropy(action_dim: jax.Array) -> jax.Array:
    """H0 = -|A|, the per-step target entropy (spec §2.5) that the budgets scale."""
    return -jnp.asarray(action_dim, jnp.float32)


def entropy_budget(rho: jax.Array, action_dim: jax.Array, gamma: jax.Array) -> jax.Array:
    """H_budget = rho * H0 / (1 - gamma), H0 = -|A| (spec §3.2, Eq. 9 of the paper)."""
    return rho * target_entropy(action_dim) / (1.0 - gamma)


def horizon_in_range(horizon: jax.Array, gamma: jax.Array) -> jax.Array:
    """D clipped to [0, gamma / (1 - gamma)], the range of a discounted count of steps. The head is a regression
    output that can leave it (no LayerNorm: -83 and 2960 on Hopper at gamma 0.99, docs/decisions.md), and a D out
    of range turns the budget positive or slack; the budget and D's own target use D only through this."""
    return jnp.clip(horizon, 0.0, gamma / (1.0 - gamma))


def entropy_budget_lived(rho: jax.Array, action_dim: jax.Array, horizon: jax.Array, gamma: jax.Array) -> jax.Array:
    """H_budget(s, a) = rho * H0 * (1 + D(s, a)), D = E[sum_{t>=1} gamma^t 1{alive at t}]: §3.2's budget counted
    over the steps the episode still lives (`--budget-horizon lived`, docs/decisions.md). Without termination
    D = gamma / (1 - gamma) and this is `entropy_budget`. D is detached and in range (`horizon_in_range`)."""
    return rho * target_entropy(action_dim) * (1.0 + sg(horizon_in_range(horizon, gamma)))


def horizon_target(horizon_next: jax.Array, discount: jax.Array, gamma: jax.Array) -> jax.Array:
    """y_D = gamma (1 - d) (1 + Dbar(s', a')), Dbar in range: D counts the discounted steps after this one (A1)."""
    return sg(discount * (1.0 + horizon_in_range(horizon_next, gamma)))


def update_critic_std_running_mean(running_mean: jax.Array, batch_std: jax.Array, tau: jax.Array) -> jax.Array:
    """sigma_bar <- (1 - tau) sigma_bar + tau * mean_batch(sigma) per critic (spec §2.3).

    `running_mean` [2] starts at the sentinel -1 and is replaced by the first batch mean.
    Warning: the spec updates sigma_bar BEFORE it is used for the clip bound and the weight.
    """
    batch_mean = jnp.mean(sg(batch_std), axis=-1)  # [2]
    blended = (1.0 - tau) * running_mean + tau * batch_mean
    return jnp.where(running_mean < 0.0, batch_mean, blended)


def reward_critic_targets(
    q_next: jax.Array,
    std_next: jax.Array,
    z: jax.Array,
    reward: jax.Array,
    discount: jax.Array,
    entropy_bonus: jax.Array,
) -> tuple[jax.Array, jax.Array]:
    """(y_q, y_z) from the twin target critic with the smaller mean (spec §2.2; §3.2 for DSAC-E).

    q_next, std_next, z: [2, B]; z ~ N(0, 1) clipped to [-3, 3], one per critic.
    discount = gamma * (1 - terminated): truncated transitions keep their bootstrap.
    entropy_bonus = -alpha * log pi' for dsac-t; 0 for the DSAC-E variants (no entropy in Q_r).
    """
    idx = jnp.argmin(q_next, axis=0)[None]  # [1, B]: twin selection on the MEANS
    q_sel = jnp.take_along_axis(q_next, idx, axis=0)[0]
    z_sel = jnp.take_along_axis(z * std_next, idx, axis=0)[0]
    y_q = reward + discount * (q_sel + entropy_bonus)
    y_z = reward + discount * (q_sel + z_sel + entropy_bonus)
    return sg(y_q), sg(y_z)


def _detached_clipped_target(q, std, y_z, std_running_mean, xi):
    """(Qd, sd, y_z^b): detached Q [2, B] and sigma [2, B], and y_z clipped to Qd +- xi * sigma_bar_i (spec §2.3)."""
    q_d = sg(q)
    std_d = sg(jnp.maximum(std, 0.0))
    bound = (xi * std_running_mean)[:, None]  # [2, 1]
    return q_d, std_d, q_d + jnp.clip(y_z[None] - q_d, -bound, bound)


def distributional_critic_loss(
    q: jax.Array,
    std: jax.Array,
    y_q: jax.Array,
    y_z: jax.Array,
    std_running_mean: jax.Array,
    xi: jax.Array,
    epsilon: jax.Array,
) -> jax.Array:
    """DSAC-T surrogate, 2023/2024 form, summed over the twins (spec §2.3).

    L_i = (sigma_bar_i^2 + eps) * mean(-sg[y_q - Q]/(sd^2 + eps) * Q - ((Qd - y_z^b)^2 - sd^2)/(sd^3 + eps) * sigma)
    with y_z^b = Qd + clip(y_z - Qd, -xi * sigma_bar_i, xi * sigma_bar_i), Qd = sg[Q], sd = sg[max(sigma, 0)].
    q, std: [2, B]; y_q, y_z: [B]; std_running_mean: [2].
    """
    q_d, std_d, y_zb = _detached_clipped_target(q, std, y_z, std_running_mean, xi)
    weight = std_running_mean**2 + epsilon  # [2]
    mean_term = -sg(y_q[None] - q) / (std_d**2 + epsilon) * q
    std_term = -((q_d - y_zb) ** 2 - std_d**2) / (std_d**3 + epsilon) * std
    return jnp.sum(weight * jnp.mean(mean_term + std_term, axis=-1))


def distributional_critic_loss_huber(
    q: jax.Array,
    std: jax.Array,
    y_q: jax.Array,
    y_z: jax.Array,
    std_running_mean: jax.Array,
    xi: jax.Array,
    epsilon: jax.Array,
    delta: float = 50.0,
) -> jax.Array:
    """DSAC-v2's 2025 Huber variant (spec §2.3, `critic_loss="huber"`), summed over the twins.

    L_i = mean(ratio * [huber(Q, y_q) + sigma * (sd^2 - huber(Qd, y_z^b)) / (sd + eps)]),
    ratio = clip(sigma_bar^2 / (sd^2 + eps), 0.1, 10); huber is 0.5 x^2 inside delta.
    """
    q_d, std_d, y_zb = _detached_clipped_target(q, std, y_z, std_running_mean, xi)
    ratio = sg(jnp.clip(std_running_mean[:, None] ** 2 / (std_d**2 + epsilon), 0.1, 10.0))
    mean_term = optax.huber_loss(q, jnp.broadcast_to(y_q, q.shape), delta=delta)
    std_term = std * (std_d**2 - optax.huber_loss(q_d, y_zb, delta=delta)) / (std_d + epsilon)
    return jnp.sum(jnp.mean(ratio * (mean_term + std_term), axis=-1))


def sac_critic_targets(
    q_next: jax.Array, reward: jax.Array, discount: jax.Array, entropy_bonus: jax.Array
) -> jax.Array:
    """SAC soft target y = r + gamma (1 - d) (min_i Qbar_i(s', a') - alpha log pi') (spec §3.2 table)."""
    return sg(reward + discount * (jnp.min(q_next, axis=0) + entropy_bonus))


def sac_critic_loss(q: jax.Array, y: jax.Array) -> jax.Array:
    """Twin MSE: sum_i mean((Q_i - y)^2); q: [2, B]."""
    return jnp.sum(jnp.mean((q - y[None]) ** 2, axis=-1))


def entropy_critic_target(next_log_prob: jax.Array, q_e_next: jax.Array, discount: jax.Array) -> jax.Array:
    """y_e = gamma (1 - d) (-log pi(a'|s') + Qbar_e(s', a')) (spec §3.2 PIS; A1: no current-step entropy).

    q_e_next: [B], already the min over twins when `twin_entropy_critic` is on.
    """
    return sg(discount * (-next_log_prob + q_e_next))


def entropy_baseline(log_prob: jax.Array) -> jax.Array:
    """The entropy critic's baseline (`--entropy-baseline`, not in the spec; docs/decisions.md): b = mean(-log pi),
    detached. The head learns the deviation Q_e - b D (target: eq. 3.2's with -log pi - b per step), and
    Q_e = deviation + b D, so a shift of the policy's entropy reaches Q_e at once, not after 1 / (1 - gamma)
    backups."""
    return jnp.mean(sg(-log_prob))


def baseline_trajectory_entropy(
    deviation: jax.Array, log_prob: jax.Array, horizon: jax.Array, gamma: jax.Array
) -> jax.Array:
    """Q_e = R + b sg(D) under `--entropy-baseline`: the deviation head R plus b = `entropy_baseline(log_prob)` over
    the D steps (`horizon_in_range`). D is detached, as in the budget: the actor's gradient reaches Q_e through R
    alone, since through b D it would favour actions whose D reads low while b < 0 (docs/decisions.md)."""
    return deviation + entropy_baseline(log_prob) * sg(horizon_in_range(horizon, gamma))


def entropy_critic_loss(q_e: jax.Array, y_e: jax.Array) -> jax.Array:
    """Plain regression, sum over entropy critics of mean((Q_e - y_e)^2) (spec §3.2, A2); q_e: [n, B]."""
    return jnp.sum(jnp.mean((q_e - y_e[None]) ** 2, axis=-1))


def actor_loss(log_prob: jax.Array, q_r: jax.Array, q_e: jax.Array | None, alpha: jax.Array) -> jax.Array:
    """L_pi = mean(alpha log pi - min_i Q_r,i - alpha Q_e) (spec §3.2 PIM); q_e None for dsac-t/sac.

    q_r: [2, B] online critic means at the fresh action. alpha is detached here; the caller must keep
    critic params out of the differentiated arguments.
    """
    alpha = sg(alpha)
    objective = jnp.min(q_r, axis=0) - alpha * log_prob
    if q_e is not None:
        objective = objective + alpha * q_e
    return -jnp.mean(objective)


def temperature_loss_trajectory(
    log_alpha: jax.Array, log_prob: jax.Array, q_e: jax.Array, budget: jax.Array, floor_gap: jax.Array = jnp.inf
) -> jax.Array:
    """TEC: L_alpha = log(alpha) * mean(sg[-log pi + Q_e] - H_budget) (spec §3.2 TUP, A4 for the sign).

    Its gradient on log(alpha) is the constraint gap: positive (alpha falls) above the budget. With the entropy
    floor on (`entropy_floor_gap`), the gap is the smaller of the two: alpha falls only while both allow it.
    """
    return log_alpha * jnp.minimum(jnp.mean(sg(-log_prob + q_e) - budget), sg(floor_gap))


def entropy_floor_gap(log_prob: jax.Array, step_budget: jax.Array, floor: jax.Array, steps: jax.Array) -> jax.Array:
    """The entropy floor's gap (`--entropy-floor`, not in the spec; docs/decisions.md): steps * (mean(-log pi) -
    (rho H0 - floor)), `step_budget` = rho H0, the per-step entropy above the floor counted over the `steps` the
    budget counts (mean of 1 + D, or 1 / (1 - gamma)), so it is in the trajectory gap's units. +inf (no floor) when
    `floor` < 0."""
    gap = steps * (jnp.mean(sg(-log_prob)) - (step_budget - floor))
    return jnp.where(floor < 0, jnp.inf, gap)


def temperature_loss_per_step(log_alpha: jax.Array, log_prob: jax.Array, target_entropy: jax.Array) -> jax.Array:
    """Per-step SAC/DSAC-T form: L_alpha = -log(alpha) * mean(sg[log pi] + H0) (spec §2.5)."""
    return -log_alpha * jnp.mean(sg(log_prob) + target_entropy)


def polyak(target, online, tau: jax.Array):
    """target <- (1 - tau) target + tau online (spec §2.6)."""
    return jax.tree.map(lambda t, o: (1.0 - tau) * t + tau * o, target, online)
