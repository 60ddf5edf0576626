"""Every target and loss of `mjx_tecrl.losses` against an independent plain-numpy computation (spec §2.2-2.5,
§3.2), with and without jit, plus gradient forms, stop-gradients and the §3.2 variant equivalence."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mjx_tecrl import distributions, losses

JIT = pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])


def _maybe_jit(fn, jit):
    return jax.jit(fn) if jit else fn


def _fast_jit(fn):
    # Compile speed only, for the network-sized programs (the shared CPU spends its time in LLVM).
    return jax.jit(fn, compiler_options={"xla_backend_optimization_level": 0})


def f32(x):
    return jnp.asarray(np.asarray(x, np.float32))


# ---------------------------------------------------------------------------------------------
# budget and running mean


@JIT
def test_entropy_budget(jit):
    fn = _maybe_jit(losses.entropy_budget, jit)
    # Spec §3.4 worked budgets at gamma = 0.99.
    assert float(fn(f32(20.0), f32(17.0), f32(0.99))) == pytest.approx(-34_000.0, rel=1e-4)
    assert float(fn(f32(20.0), f32(6.0), f32(0.99))) == pytest.approx(-12_000.0, rel=1e-4)
    assert float(fn(f32(1.0), f32(8.0), f32(0.99))) == pytest.approx(-800.0, rel=1e-4)
    assert float(fn(f32(0.5), f32(3.0), f32(0.8))) == pytest.approx(0.5 * -3.0 / 0.2, rel=1e-6)


@JIT
def test_critic_std_running_mean_sentinel_then_blend(jit):
    fn = _maybe_jit(losses.update_critic_std_running_mean, jit)
    b1 = np.array([[1.0, 2.0, 6.0], [0.5, 0.5, 2.0]], np.float32)
    r1 = fn(f32([-1.0, -1.0]), f32(b1), f32(0.1))
    np.testing.assert_allclose(np.asarray(r1), b1.mean(1), rtol=1e-6)  # sentinel -> first batch mean
    b2 = np.array([[4.0, 4.0, 4.0], [2.0, 0.0, 1.0]], np.float32)
    r2 = fn(r1, f32(b2), f32(0.1))
    np.testing.assert_allclose(np.asarray(r2), 0.9 * b1.mean(1) + 0.1 * b2.mean(1), rtol=1e-6)
    # Mixed: only the critic still at the sentinel is replaced.
    r3 = fn(f32([-1.0, 2.0]), f32(b2), f32(0.25))
    np.testing.assert_allclose(np.asarray(r3), [4.0, 0.75 * 2.0 + 0.25 * 1.0], rtol=1e-6)


def test_critic_std_running_mean_has_no_gradient_into_batch_std():
    g = jax.grad(lambda s: jnp.sum(losses.update_critic_std_running_mean(f32([0.5, 0.7]), s, f32(0.3))))(
        f32([[1.0, 2.0], [3.0, 4.0]])
    )
    np.testing.assert_array_equal(np.asarray(g), 0.0)


# ---------------------------------------------------------------------------------------------
# reward critic targets (spec §2.2 / §3.2)

Q_NEXT = np.array([[1.0, 5.0, 2.5], [3.0, 0.0, 2.0]], np.float32)  # argmin: critic 0, 1, 1
STD_NEXT = np.array([[0.5, 2.0, 1.0], [4.0, 0.3, 0.7]], np.float32)
Z = np.array([[1.5, -2.0, 0.4], [-0.5, 3.0, -1.2]], np.float32)
REWARD = np.array([0.5, -1.0, 2.0], np.float32)
DISCOUNT = np.array([0.9, 0.9, 0.0], np.float32)  # last row terminated
BONUS = np.array([0.3, -0.7, 1.1], np.float32)


def _np_reward_targets(q_next, std_next, z, reward, discount, bonus):
    y_q, y_z = [], []
    for j in range(q_next.shape[1]):
        i = 0 if q_next[0, j] < q_next[1, j] else 1  # selection on the MEANS, not on the samples
        y_q.append(reward[j] + discount[j] * (q_next[i, j] + bonus[j]))
        y_z.append(reward[j] + discount[j] * (q_next[i, j] + z[i, j] * std_next[i, j] + bonus[j]))
    return np.array(y_q), np.array(y_z)


@JIT
@pytest.mark.parametrize("with_bonus", [False, True])
def test_reward_critic_targets(jit, with_bonus):
    bonus = BONUS if with_bonus else np.zeros(3, np.float32)
    fn = _maybe_jit(losses.reward_critic_targets, jit)
    y_q, y_z = fn(*(f32(x) for x in (Q_NEXT, STD_NEXT, Z, REWARD, DISCOUNT, bonus)))
    want_q, want_z = _np_reward_targets(Q_NEXT, STD_NEXT, Z, REWARD, DISCOUNT, bonus)
    np.testing.assert_allclose(np.asarray(y_q), want_q, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(y_z), want_z, rtol=1e-6)
    # Row 1: critic 1 has the smaller mean (0.0 < 5.0): its mean AND its own sample z_1 * sigma_1 are used.
    assert float(y_z[1]) == pytest.approx(-1.0 + 0.9 * (0.0 + 3.0 * 0.3 + bonus[1]), rel=1e-6)
    # Terminated row: only the reward.
    assert float(y_q[2]) == float(y_z[2]) == pytest.approx(2.0)


def test_reward_targets_select_on_means_not_samples():
    # Critic 0 has the smaller mean but critic 1 the smaller sample: the mean decides, for BOTH targets.
    q_next = f32([[1.0], [1.5]])
    std_next = f32([[0.1], [2.0]])
    z = f32([[0.0], [-3.0]])
    y_q, y_z = losses.reward_critic_targets(q_next, std_next, z, f32([0.0]), f32([1.0]), f32([0.0]))
    assert float(y_q[0]) == pytest.approx(1.0)
    assert float(y_z[0]) == pytest.approx(1.0)  # critic 0's sample (z = 0), not 1.5 - 6


# ---------------------------------------------------------------------------------------------
# distributional critic loss (spec §2.3, 2023/2024 surrogate)


def _np_dist_loss(q, std, y_q, y_z, sbar, xi, eps):
    q, std, y_q, y_z, sbar = (np.asarray(x, np.float64) for x in (q, std, y_q, y_z, sbar))
    sd = np.maximum(std, 0.0)
    total = 0.0
    for i in range(2):
        b = xi * sbar[i]
        y_zb = q[i] + np.clip(y_z - q[i], -b, b)
        terms = (
            -(y_q - q[i]) / (sd[i] ** 2 + eps) * q[i] - ((q[i] - y_zb) ** 2 - sd[i] ** 2) / (sd[i] ** 3 + eps) * std[i]
        )
        total += (sbar[i] ** 2 + eps) * terms.mean()
    return total


def _np_dist_grads(q, std, y_q, y_z, sbar, xi, eps):
    """The spec's gradient form (§2.3): dL/dQ_i and dL/dsigma_i per element."""
    q, std, y_q, y_z, sbar = (np.asarray(x, np.float64) for x in (q, std, y_q, y_z, sbar))
    B = q.shape[1]
    gq, gs = np.zeros_like(q), np.zeros_like(q)
    for i in range(2):
        w = sbar[i] ** 2 + eps
        y_zb = q[i] + np.clip(y_z - q[i], -xi * sbar[i], xi * sbar[i])
        gq[i] = -w * (y_q - q[i]) / (std[i] ** 2 + eps) / B
        gs[i] = -w * ((q[i] - y_zb) ** 2 - std[i] ** 2) / (std[i] ** 3 + eps) / B
    return gq, gs


Q = np.array([[0.5, -1.0, 2.0], [1.0, 0.2, -0.3]], np.float32)
STD = np.array([[0.8, 1.5, 0.3], [2.0, 0.6, 1.1]], np.float32)
Y_Q = np.array([1.0, -0.5, 1.5], np.float32)
SBAR = np.array([0.7, 1.2], np.float32)
XI, EPS = 3.0, 0.1
# |y_z - Q| <= xi * sbar everywhere (bounds 2.1 and 3.6): clip inactive.
Y_Z_INSIDE = np.array([1.2, -0.1, 1.0], np.float32)
# Far away on both sides: clip active for every element.
Y_Z_OUTSIDE = np.array([30.0, -40.0, 25.0], np.float32)


@JIT
@pytest.mark.parametrize("y_z", [Y_Z_INSIDE, Y_Z_OUTSIDE], ids=["clip-inactive", "clip-active"])
def test_distributional_critic_loss_value_and_gradient_form(jit, y_z):
    inside = np.all(np.abs(y_z[None] - Q) <= XI * SBAR[:, None])
    outside = np.all(np.abs(y_z[None] - Q) > XI * SBAR[:, None])
    assert inside or outside  # the two cases are what they claim to be

    def loss(q, std):
        return losses.distributional_critic_loss(q, std, f32(Y_Q), f32(y_z), f32(SBAR), f32(XI), f32(EPS))

    fn = _maybe_jit(jax.value_and_grad(loss, argnums=(0, 1)), jit)
    val, (gq, gs) = fn(f32(Q), f32(STD))
    assert float(val) == pytest.approx(_np_dist_loss(Q, STD, Y_Q, y_z, SBAR, XI, EPS), rel=1e-5)
    want_gq, want_gs = _np_dist_grads(Q, STD, Y_Q, y_z, SBAR, XI, EPS)
    np.testing.assert_allclose(np.asarray(gq), want_gq, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(np.asarray(gs), want_gs, rtol=1e-5, atol=1e-7)
    if outside:
        # With the clip active the sigma-gradient uses (xi sbar)^2, not the raw (Q - y_z)^2.
        w = (SBAR[:, None].astype(np.float64) ** 2 + EPS) / Q.shape[1]
        unclipped = -w * ((Q - y_z[None]) ** 2 - STD**2) / (STD**3 + EPS)
        assert np.all(np.abs(np.asarray(gs)) < 0.5 * np.abs(unclipped))


def test_distributional_loss_mean_gradient_uses_expected_target_not_sample():
    # Refinement 1 (expected value substituting): dL/dQ depends on y_q only, never on y_z.
    def gq(y_z):
        return jax.grad(
            lambda q: losses.distributional_critic_loss(q, f32(STD), f32(Y_Q), y_z, f32(SBAR), f32(XI), f32(EPS))
        )(f32(Q))

    np.testing.assert_array_equal(np.asarray(gq(f32(Y_Z_INSIDE))), np.asarray(gq(f32(Y_Z_OUTSIDE))))


def _np_huber(x, delta):
    ax = np.abs(x)
    return np.where(ax <= delta, 0.5 * x**2, delta * (ax - 0.5 * delta))


def _np_huber_loss(q, std, y_q, y_z, sbar, xi, eps, delta):
    q, std, y_q, y_z, sbar = (np.asarray(x, np.float64) for x in (q, std, y_q, y_z, sbar))
    total = 0.0
    for i in range(2):
        y_zb = q[i] + np.clip(y_z - q[i], -xi * sbar[i], xi * sbar[i])
        ratio = np.clip(sbar[i] ** 2 / (std[i] ** 2 + eps), 0.1, 10.0)
        t = _np_huber(q[i] - y_q, delta) + std[i] * (std[i] ** 2 - _np_huber(q[i] - y_zb, delta)) / (std[i] + eps)
        total += np.mean(ratio * t)
    return total


@JIT
@pytest.mark.parametrize("delta", [50.0, 0.4])  # 0.4: the linear branch of the Huber is exercised too
@pytest.mark.parametrize("y_z", [Y_Z_INSIDE, Y_Z_OUTSIDE], ids=["clip-inactive", "clip-active"])
def test_distributional_critic_loss_huber_value(jit, delta, y_z):
    q = Q * 3.0  # spread so |Q - y_q| crosses delta = 0.4 in some elements but not others
    fn = _maybe_jit(lambda *a: losses.distributional_critic_loss_huber(*a, delta=delta), jit)
    val = fn(f32(q), f32(STD), f32(Y_Q), f32(y_z), f32(SBAR), f32(XI), f32(EPS))
    assert float(val) == pytest.approx(_np_huber_loss(q, STD, Y_Q, y_z, SBAR, XI, EPS, delta), rel=1e-5)


# ---------------------------------------------------------------------------------------------
# SAC, entropy critic


@JIT
def test_sac_critic_targets_and_loss(jit):
    y = _maybe_jit(losses.sac_critic_targets, jit)(f32(Q_NEXT), f32(REWARD), f32(DISCOUNT), f32(BONUS))
    want_y = REWARD + DISCOUNT * (np.min(Q_NEXT, axis=0) + BONUS)
    np.testing.assert_allclose(np.asarray(y), want_y, rtol=1e-6)
    val = _maybe_jit(losses.sac_critic_loss, jit)(f32(Q), y)
    want = sum(np.mean((Q[i].astype(np.float64) - want_y) ** 2) for i in range(2))
    assert float(val) == pytest.approx(want, rel=1e-5)


@JIT
def test_entropy_critic_target_with_and_without_termination(jit):
    next_log_prob = np.array([-1.5, 0.7, 2.0], np.float32)
    q_e_next = np.array([3.0, -2.0, 10.0], np.float32)
    gamma = 0.8
    terminated = np.array([0.0, 0.0, 1.0], np.float32)
    y = _maybe_jit(losses.entropy_critic_target, jit)(
        f32(next_log_prob), f32(q_e_next), f32(gamma * (1.0 - terminated))
    )
    want = gamma * (1.0 - terminated) * (-next_log_prob + q_e_next)  # A1: gamma also on the first term
    np.testing.assert_allclose(np.asarray(y), want, rtol=1e-6)
    assert float(y[2]) == 0.0  # terminated -> no future entropy at all
    assert float(y[0]) == pytest.approx(0.8 * (1.5 + 3.0))


@JIT
@pytest.mark.parametrize("n", [1, 2])
def test_entropy_critic_loss(jit, n):
    q_e = np.array([[1.0, -2.0, 0.5], [0.0, 4.0, 1.5]], np.float32)[:n]
    y_e = np.array([0.5, -1.0, 3.0], np.float32)
    val = _maybe_jit(losses.entropy_critic_loss, jit)(f32(q_e), f32(y_e))
    assert float(val) == pytest.approx(sum(np.mean((q_e[i] - y_e) ** 2) for i in range(n)), rel=1e-6)


def test_no_gradient_flows_through_any_target():
    """Gradients of every critic loss composed with its target function vanish w.r.t. the target inputs."""

    def dist(q_next, std_next, z, reward, discount, bonus):
        y_q, y_z = losses.reward_critic_targets(q_next, std_next, z, reward, discount, bonus)
        return losses.distributional_critic_loss(f32(Q), f32(STD), y_q, y_z, f32(SBAR), f32(XI), f32(EPS))

    def huber(q_next, std_next, z, reward, discount, bonus):
        y_q, y_z = losses.reward_critic_targets(q_next, std_next, z, reward, discount, bonus)
        return losses.distributional_critic_loss_huber(f32(Q), f32(STD), y_q, y_z, f32(SBAR), f32(XI), f32(EPS))

    def sac(q_next, std_next, z, reward, discount, bonus):
        return losses.sac_critic_loss(f32(Q), losses.sac_critic_targets(q_next, reward, discount, bonus))

    def ent(q_next, std_next, z, reward, discount, bonus):
        y_e = losses.entropy_critic_target(bonus, q_next[0], discount)
        return losses.entropy_critic_loss(f32(Q[:1]), y_e)

    args = tuple(f32(x) for x in (Q_NEXT, STD_NEXT, Z, REWARD, DISCOUNT, BONUS))
    for fn in (dist, huber, sac, ent):
        assert float(fn(*args)) != 0.0
        grads = jax.grad(fn, argnums=tuple(range(6)))(*args)
        for g in grads:
            np.testing.assert_array_equal(np.asarray(g), 0.0)
    # ... while the loss does have a gradient w.r.t. the online critic outputs (the test can fail).
    y_q, y_z = losses.reward_critic_targets(*args)
    g = jax.grad(lambda q: losses.distributional_critic_loss(q, f32(STD), y_q, y_z, f32(SBAR), f32(XI), f32(EPS)))(
        f32(Q)
    )
    assert np.any(np.asarray(g) != 0.0)


# ---------------------------------------------------------------------------------------------
# actor and temperature

LOG_PROB = np.array([-1.0, 0.5, 2.0], np.float32)
Q_R = np.array([[2.0, -1.0, 0.5], [1.0, 0.0, 3.0]], np.float32)
Q_E = np.array([4.0, -3.0, 1.0], np.float32)


@JIT
@pytest.mark.parametrize("with_qe", [False, True])
def test_actor_loss_value(jit, with_qe):
    alpha = 0.7
    q_e = f32(Q_E) if with_qe else None
    fn = _maybe_jit(lambda lp, qr, a: losses.actor_loss(lp, qr, q_e, a), jit)
    val = fn(f32(LOG_PROB), f32(Q_R), f32(alpha))
    want = np.mean(alpha * LOG_PROB - np.min(Q_R, axis=0) - (alpha * Q_E if with_qe else 0.0))
    assert float(val) == pytest.approx(want, rel=1e-6)


def test_actor_loss_gradients():
    alpha, B = 0.7, 3
    grads = jax.grad(losses.actor_loss, argnums=(0, 1, 2, 3))(f32(LOG_PROB), f32(Q_R), f32(Q_E), f32(alpha))
    g_lp, g_qr, g_qe, g_alpha = (np.asarray(g) for g in grads)
    np.testing.assert_allclose(g_lp, np.full(B, alpha / B), rtol=1e-6)
    # -1/B on the smaller online critic, 0 on the other (min of the twin MEANS).
    want_qr = np.where(Q_R == Q_R.min(0, keepdims=True), -1.0 / B, 0.0)
    np.testing.assert_allclose(g_qr, want_qr, rtol=1e-6)
    np.testing.assert_allclose(g_qe, np.full(B, -alpha / B), rtol=1e-6)
    assert float(g_alpha) == 0.0  # alpha is detached in the actor loss


@JIT
def test_temperature_loss_trajectory_value_and_gradient(jit):
    log_alpha, budget = 0.4, -6.0
    fn = _maybe_jit(jax.value_and_grad(losses.temperature_loss_trajectory, argnums=(0, 1, 2, 3)), jit)
    val, (g_la, g_lp, g_qe, g_b) = fn(f32(log_alpha), f32(LOG_PROB), f32(Q_E), f32(budget))
    gap = np.mean(-LOG_PROB + Q_E - budget)
    assert float(val) == pytest.approx(log_alpha * gap, rel=1e-6)
    assert float(g_la) == pytest.approx(gap, rel=1e-6)  # dL/dlog alpha = mean(-log pi + Q_e - H_budget)
    np.testing.assert_array_equal(np.asarray(g_lp), 0.0)  # bracket stop-gradded
    np.testing.assert_array_equal(np.asarray(g_qe), 0.0)


@pytest.mark.parametrize("budget,sign", [(-1e4, +1.0), (1e4, -1.0)])
def test_temperature_trajectory_gradient_sign(budget, sign):
    # Entropy above the budget -> positive gradient -> gradient descent lowers log alpha; below -> raises.
    g = jax.grad(losses.temperature_loss_trajectory)(f32(0.0), f32(LOG_PROB), f32(Q_E), f32(budget))
    assert np.sign(float(g)) == sign


@JIT
def test_temperature_loss_per_step_value_and_gradient(jit):
    log_alpha, h0 = -0.3, -3.0
    fn = _maybe_jit(jax.value_and_grad(losses.temperature_loss_per_step, argnums=(0, 1)), jit)
    val, (g_la, g_lp) = fn(f32(log_alpha), f32(LOG_PROB), f32(h0))
    assert float(val) == pytest.approx(-log_alpha * np.mean(LOG_PROB + h0), rel=1e-6)
    assert float(g_la) == pytest.approx(-np.mean(LOG_PROB + h0), rel=1e-6)
    np.testing.assert_array_equal(np.asarray(g_lp), 0.0)


def test_trajectory_loss_reduces_to_per_step_form():
    # Spec §3.2 sign check: Q_e -> 0 and H_budget -> H0 gives DSAC-T's -log alpha (log pi + H0).
    la, h0 = f32(0.9), f32(-2.0)
    a = losses.temperature_loss_trajectory(la, f32(LOG_PROB), jnp.zeros(3), h0)
    b = losses.temperature_loss_per_step(la, f32(LOG_PROB), h0)
    assert float(a) == pytest.approx(float(b), rel=1e-6)


@JIT
def test_polyak(jit):
    target = {"w": f32([[1.0, 2.0], [3.0, 4.0]]), "b": f32([0.5]), "none": None}
    online = {"w": f32([[-1.0, 0.0], [5.0, 4.0]]), "b": f32([2.5]), "none": None}
    out = _maybe_jit(losses.polyak, jit)(target, online, f32(0.25))
    np.testing.assert_allclose(np.asarray(out["w"]), 0.75 * np.asarray(target["w"]) + 0.25 * np.asarray(online["w"]))
    np.testing.assert_allclose(np.asarray(out["b"]), [0.75 * 0.5 + 0.25 * 2.5])
    assert out["none"] is None


# ---------------------------------------------------------------------------------------------
# Spec §3.2: with alpha fixed and critics at their fixed points (Q_dsac-t = Q_r + alpha Q_e),
# dsac-e-no-tec and dsac-t have the same actor gradient.


def _mlp(params, x):
    (w0, b0), (w1, b1) = params
    return jax.nn.gelu(x @ w0 + b0, approximate=False) @ w1 + b1


def _init_mlp(rng, n_in, n_out, width=8):
    return (
        (f32(rng.normal(size=(n_in, width)) / np.sqrt(n_in)), f32(rng.normal(size=width) * 0.1)),
        (f32(rng.normal(size=(width, n_out)) / np.sqrt(width)), f32(rng.normal(size=n_out) * 0.1)),
    )


def test_res_actor_gradient_equals_dsac_t_at_fixed_point():
    obs_dim, act_dim, B, alpha = 3, 2, 6, f32(0.37)
    rng = np.random.default_rng(0)
    obs = f32(rng.normal(size=(B, obs_dim)))
    noise = f32(rng.normal(size=(B, act_dim)))
    actor_params = _init_mlp(rng, obs_dim, 2 * act_dim)
    q_r_params = [_init_mlp(rng, obs_dim + act_dim, 1) for _ in range(2)]  # twin reward critics
    q_e_params = _init_mlp(rng, obs_dim + act_dim, 1)

    def q_r(a):
        return jnp.stack([_mlp(p, jnp.concatenate([obs, a], -1))[:, 0] for p in q_r_params])

    def q_e(a):
        return _mlp(q_e_params, jnp.concatenate([obs, a], -1))[:, 0]

    def sample(p):  # the library's reparameterised tanh-Gaussian, fixed noise
        mean, log_std = jnp.split(_mlp(p, obs), 2, axis=-1)
        u = mean + jnp.exp(log_std) * noise
        return jnp.tanh(u), distributions.log_prob_pre_tanh(mean, log_std, u)

    def loss_res(p):  # dsac-e-no-tec: alpha logpi - min Q_r - alpha Q_e
        a, lp = sample(p)
        return losses.actor_loss(lp, q_r(a), q_e(a), alpha)

    def loss_soft(p):  # dsac-t with the soft critic Q_i = Q_r,i + alpha Q_e (its fixed point)
        a, lp = sample(p)
        return losses.actor_loss(lp, q_r(a) + alpha * q_e(a)[None], None, alpha)

    def loss_wrong(p):  # dsac-t fed the reward critic alone: must differ, or the test proves nothing
        a, lp = sample(p)
        return losses.actor_loss(lp, q_r(a), None, alpha)

    (v1, g1), (v2, g2), (_, g3) = _fast_jit(
        lambda p: tuple(jax.value_and_grad(f)(p) for f in (loss_res, loss_soft, loss_wrong))
    )(actor_params)
    assert float(v1) == pytest.approx(float(v2), rel=1e-5)
    flat1, flat2, flat3 = (np.concatenate([np.ravel(x) for x in jax.tree.leaves(g)]) for g in (g1, g2, g3))
    assert np.linalg.norm(flat1) > 1e-3
    np.testing.assert_allclose(flat1, flat2, rtol=1e-4, atol=1e-6)
    assert not np.allclose(flat1, flat3, rtol=1e-2, atol=1e-4)
