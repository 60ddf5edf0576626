"""Learner.update for every variant (spec §2.6, §3.3, §8): metrics, schedule, Polyak, determinism, vmap,
numerical corner cases, temperature direction, variant wiring checked against a hand computation, and two
toy problems with known fixed points."""

from __future__ import annotations

import functools

import jax
import numpy as np
import optax
import pytest

from mjx_tecrl.config import Config
from mjx_tecrl.learner import Learner
from mjx_tecrl.networks import make_networks
from mjx_tecrl.types import Transition

# Compile speed only (the shared 2-core CPU spends most of these tests in LLVM): same programs, same maths.
OPTS = {"xla_backend_optimization_level": 0}
OBS_DIM, ACT_DIM, B = 3, 2, 8
ALGOS = ("dsac-e", "dsac-e-no-tec", "dsac-t", "sac")
DSAC_E = ("dsac-e", "dsac-e-no-tec")
NETS = make_networks(ACT_DIM, (16, 16), twin_entropy_critic=False)
HALF_LOG_2PI = 0.5 * np.log(2.0 * np.pi)


def _jit(f, **kw):
    return jax.jit(f, compiler_options=OPTS, **kw)


@functools.cache
def learner(algo: str) -> Learner:
    return Learner(NETS, algo, "nll", False)


# Every variant's own Learner.init, compiled as ONE program (XLA merges the identical parameter draws).
_init_all = _jit(lambda k, h: {algo: learner(algo).init(k, OBS_DIM, h) for algo in ALGOS})


@functools.cache
def update_fn(algo):
    return _jit(learner(algo).update, static_argnames="update_actor")


def hp(**overrides):
    return Config(**overrides).hyperparams()


def init_state(algo, seed=0, **overrides):
    return _init_all(jax.random.PRNGKey(seed), hp(**overrides))[algo]


def key(i):
    return jax.random.PRNGKey(i)


def make_batch(seed=0, terminated=(0, 0, 0, 1, 0, 0, 1, 0), reward=None, obs=None, next_obs=None):
    rng = np.random.default_rng(seed)
    f = lambda x: np.asarray(x, np.float32)  # noqa: E731
    return Transition(
        obs=f(rng.normal(size=(B, OBS_DIM)) if obs is None else obs),
        action=f(np.tanh(rng.normal(size=(B, ACT_DIM)))),
        reward=f(rng.normal(size=B) if reward is None else reward),
        next_obs=f(rng.normal(size=(B, OBS_DIM)) if next_obs is None else next_obs),
        terminated=f(np.broadcast_to(terminated, (B,))),
        truncated=np.zeros(B, np.float32),
    )


def leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def assert_trees_equal(a, b):
    la, lb = leaves(a), leaves(b)
    assert len(la) == len(lb)
    for x, y in zip(la, lb, strict=True):
        np.testing.assert_array_equal(x, y)


def perturb(tree, seed, scale=0.1):
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda x: np.asarray(x + scale * rng.normal(size=x.shape), np.float32), tree)


def set_final_layer(params, column, bias, zero_kernel=True):
    """Set the output layer's bias (and zero its kernel) for output columns `column` of every stacked copy."""
    params = jax.tree.map(np.array, params)  # mutable numpy copy
    dense = params["params"]["MLP_0"]["Dense_2"]
    dense["bias"][..., column] = bias
    if zero_kernel:
        dense["kernel"][..., column] = 0.0
    return params


def all_finite(tree):
    return all(np.all(np.isfinite(x)) for x in leaves(tree))


# jitted forward passes for the hand computations (numpy does the rest). Every test calls the learner's
# update with update_actor=True (which includes the critic step) except where the critic-only path itself is
# under test: each extra (algo, update_actor) pair is one more compile on a slow shared CPU.
_actor = _jit(NETS.actor.apply)
_reward = _jit(NETS.reward_critics)
_entropy = _jit(NETS.entropy_critics)
_split3 = _jit(lambda k: tuple(jax.random.split(k, 3)))
_normal = _jit(lambda k, shape: jax.random.normal(k, shape), static_argnums=1)


# ---------------------------------------------------------------------------------------------
# 1. runs under jit, spec §8 metric names, finite


def expected_metric_names(algo, update_actor):
    names = {"train/alpha", "train/q_r", "train/critic_std", "train/loss_reward_critic", "diag/grad_norm_reward_critic"}
    if algo in DSAC_E:
        names |= {"train/q_e", "train/loss_entropy_critic", "diag/grad_norm_entropy_critic"}
    if update_actor:
        names |= {"train/loss_actor", "train/loss_temperature", "train/policy_entropy"}
        names |= {"diag/grad_norm_actor", "diag/grad_norm_temperature"}
        if algo in DSAC_E:
            names.add("train/trajectory_entropy")
        if algo == "dsac-e":
            names |= {"train/entropy_budget", "train/step_entropy_budget"}
            names |= {"diag/entropy_floor_binds", "diag/entropy_floor_raises"}
    return names


@pytest.mark.parametrize("algo", ALGOS)
def test_update_runs_under_jit_with_spec_metrics(algo):
    state = init_state(algo)
    new, metrics = update_fn(algo)(state, make_batch(), key(1), update_actor=True)
    names = expected_metric_names(algo, True)
    assert names <= set(metrics), names - set(metrics)
    if algo not in DSAC_E:  # no entropy critic: none of its metrics may be reported
        assert not {"train/q_e", "train/loss_entropy_critic", "train/trajectory_entropy"} & set(metrics)
    if algo != "dsac-e":
        assert "train/entropy_budget" not in metrics
    for name, value in metrics.items():
        assert np.all(np.isfinite(np.asarray(value))), name
    grad_norms = [float(v) for k, v in metrics.items() if k.startswith("diag/grad_norm_")]
    assert len(grad_norms) == (4 if algo in DSAC_E else 3) and all(g > 0.0 for g in grad_norms)
    assert all_finite(new)
    assert float(metrics["train/alpha"]) == pytest.approx(np.e, rel=1e-6)  # log alpha starts at 1.0
    if algo == "dsac-e":
        assert float(metrics["train/entropy_budget"]) == pytest.approx(1.0 * -ACT_DIM / (1 - 0.99), rel=1e-4)
    assert int(new.step) == 1


# ---------------------------------------------------------------------------------------------
# 2. the schedule: critic-only steps, Polyak on actor steps, actor step leaves the critic step alone


def test_critic_only_update_leaves_actor_alpha_and_targets():
    state = init_state("dsac-e", tau=0.3)
    batch = make_batch()
    new, metrics = update_fn("dsac-e")(state, batch, key(1), update_actor=False)
    assert set(metrics) == expected_metric_names("dsac-e", False)
    for field in (
        "actor_params",
        "actor_target_params",
        "reward_critic_target_params",
        "entropy_critic_target_params",
        "log_alpha",
        "actor_opt_state",
        "temperature_opt_state",
    ):
        assert_trees_equal(getattr(new, field), getattr(state, field))
    for field in ("reward_critic_params", "entropy_critic_params"):
        for old, upd in zip(leaves(getattr(state, field)), leaves(getattr(new, field)), strict=True):
            assert np.any(old != upd), field
    # sigma_bar: sentinel -1 replaced by the batch mean of the online critics' std (pre-update params) ...
    _, std = _reward(state.reward_critic_params, batch.obs, batch.action)
    np.testing.assert_allclose(np.asarray(new.critic_std_running_mean), np.asarray(std).mean(1), rtol=1e-5)
    # ... then blended with tau on the next step.
    newer, _ = update_fn("dsac-e")(new, batch, key(2), update_actor=False)
    _, std2 = _reward(new.reward_critic_params, batch.obs, batch.action)
    np.testing.assert_allclose(
        np.asarray(newer.critic_std_running_mean),
        0.7 * np.asarray(new.critic_std_running_mean) + 0.3 * np.asarray(std2).mean(1),
        rtol=1e-5,
    )
    assert int(newer.step) == 2


@pytest.mark.parametrize("algo", ALGOS)
def test_actor_update_moves_targets_by_polyak_tau(algo):
    """Actor and reward critics' targets at tau; the entropy critic's at its own entropy_critic_tau."""
    tau, entropy_tau = 0.3, 0.7
    state = init_state(algo, tau=tau, entropy_critic_tau=entropy_tau)
    # Targets different from the online params, so (1 - tau) target + tau online is distinguishable.
    state = state.replace(
        actor_target_params=perturb(state.actor_target_params, 1),
        reward_critic_target_params=perturb(state.reward_critic_target_params, 2),
        entropy_critic_target_params=perturb(state.entropy_critic_target_params, 3),
    )
    new, _ = update_fn(algo)(state, make_batch(), key(1), update_actor=True)
    pairs = [("actor_target_params", "actor_params", tau), ("reward_critic_target_params", "reward_critic_params", tau)]
    if algo in DSAC_E:
        pairs.append(("entropy_critic_target_params", "entropy_critic_params", entropy_tau))
    else:
        assert new.entropy_critic_params is None and new.entropy_critic_target_params is None
    for target, online, rate in pairs:
        for t_old, t_new, o_new in zip(
            leaves(getattr(state, target)), leaves(getattr(new, target)), leaves(getattr(new, online)), strict=True
        ):
            np.testing.assert_allclose(t_new, (1 - rate) * t_old + rate * o_new, rtol=1e-5, atol=1e-6)
    for old, upd in zip(leaves(state.actor_params), leaves(new.actor_params), strict=True):
        assert np.any(old != upd)
    # First Adam step moves log alpha by alpha_lr (|m_hat / sqrt(v_hat)| = 1).
    assert abs(float(new.log_alpha) - float(state.log_alpha)) == pytest.approx(3e-4, rel=1e-3)


def test_actor_step_leaves_the_critic_step_untouched():
    """The actor loss closes over critic params: its step must not change what the critics learn."""
    state = init_state("dsac-e")
    batch = make_batch()
    a, ma = update_fn("dsac-e")(state, batch, key(5), update_actor=False)
    b, mb = update_fn("dsac-e")(state, batch, key(5), update_actor=True)
    for field in (
        "reward_critic_params",
        "entropy_critic_params",
        "reward_critic_opt_state",
        "entropy_critic_opt_state",
        "critic_std_running_mean",
    ):
        assert_trees_equal(getattr(a, field), getattr(b, field))
    for name in ma:
        np.testing.assert_array_equal(np.asarray(ma[name]), np.asarray(mb[name]))


# ---------------------------------------------------------------------------------------------
# 3. determinism, keys, vmap


def test_same_key_bit_identical_different_key_differs():
    state = init_state("dsac-e")
    batch = make_batch()
    up = update_fn("dsac-e")
    a, ma = up(state, batch, key(7), update_actor=True)
    b, mb = up(state, batch, key(7), update_actor=True)
    c, mc = up(state, batch, key(8), update_actor=True)
    assert_trees_equal(a, b)
    assert_trees_equal(ma, mb)
    for field in ("actor_params", "reward_critic_params", "entropy_critic_params"):
        assert any(np.any(x != y) for x, y in zip(leaves(getattr(a, field)), leaves(getattr(c, field)), strict=True))
    assert float(ma["train/loss_actor"]) != float(mc["train/loss_actor"])


def test_vmap_over_seeds_and_hyperparams_equals_separate_updates():
    algo = "dsac-e"
    settings = [
        dict(rho=1.0, critic_lr=1e-3, gamma=0.99),
        dict(rho=50.0, critic_lr=3e-3, gamma=0.9),
        dict(rho=0.2, critic_lr=1e-2, gamma=0.5),
    ]
    states = [init_state(algo, seed=i, **s) for i, s in enumerate(settings)]
    batches = [make_batch(seed=10 + i) for i in range(3)]
    keys = [key(20 + i) for i in range(3)]
    stack = lambda xs: jax.tree.map(lambda *x: np.stack([np.asarray(y) for y in x]), *xs)  # noqa: E731
    vmapped = _jit(jax.vmap(lambda s, b, k: learner(algo).update(s, b, k, update_actor=True)))
    v_state, v_metrics = vmapped(stack(states), stack(batches), stack(keys))
    for i in range(3):
        s_state, s_metrics = update_fn(algo)(states[i], batches[i], keys[i], update_actor=True)
        for x, y in zip(leaves(s_state), leaves(jax.tree.map(lambda v, i=i: v[i], v_state)), strict=True):
            np.testing.assert_allclose(y, x, rtol=2e-5, atol=2e-6)
        for name in s_metrics:
            np.testing.assert_allclose(
                np.asarray(v_metrics[name][i]), np.asarray(s_metrics[name]), rtol=2e-5, atol=2e-6, err_msg=name
            )
    budgets = np.asarray(v_metrics["train/entropy_budget"])
    np.testing.assert_allclose(budgets, [-200.0, -1000.0, -0.8], rtol=1e-4)  # the traced rho/gamma were used


# ---------------------------------------------------------------------------------------------
# 4. numerical corner cases


@pytest.mark.parametrize("algo", ["dsac-e", "dsac-t"])
def test_no_nan_with_critic_std_at_its_lower_bound(algo):
    state = init_state(algo)
    tiny = lambda p: set_final_layer(p, 1, -21.0)  # noqa: E731  softplus(-21) ~ 7.6e-10
    state = state.replace(
        reward_critic_params=tiny(state.reward_critic_params),
        reward_critic_target_params=tiny(state.reward_critic_target_params),
    )
    batch = make_batch()
    _, std = _reward(state.reward_critic_params, batch.obs, batch.action)
    assert float(np.max(np.asarray(std))) < 1e-8
    for i in range(6):
        state, metrics = update_fn(algo)(state, batch, key(i), update_actor=True)
        assert all(np.isfinite(float(v)) for v in metrics.values()), metrics
        assert all_finite(state)
    assert float(np.max(np.asarray(state.critic_std_running_mean))) < 1e-6


@pytest.mark.parametrize("algo", ["dsac-e", "sac"])
@pytest.mark.parametrize("log_std_bias", [-30.0, 5.0])  # clipped to the -20 floor / the 0.5 ceiling
def test_no_nan_with_actions_at_tanh_limits(algo, log_std_bias):
    state = init_state(algo)
    mean_bias = np.array([60.0, -60.0])  # tanh(+-60) == +-1 exactly in float32

    def saturate(p):
        p = set_final_layer(p, slice(0, ACT_DIM), mean_bias)
        return set_final_layer(p, slice(ACT_DIM, 2 * ACT_DIM), log_std_bias)

    state = state.replace(
        actor_params=saturate(state.actor_params), actor_target_params=saturate(state.actor_target_params)
    )
    batch = make_batch()
    action, log_prob = _jit(learner(algo).sample_action)(state.actor_params, state, batch.obs, key(0))
    np.testing.assert_array_equal(np.asarray(action), np.broadcast_to([1.0, -1.0], (B, ACT_DIM)))
    assert np.all(np.isfinite(np.asarray(log_prob)))
    for i in range(4):
        state, metrics = update_fn(algo)(state, batch, key(i), update_actor=True)
        assert all(np.isfinite(float(v)) for v in metrics.values()), metrics
        assert all_finite(state)


# ---------------------------------------------------------------------------------------------
# 5. temperature direction through Learner.update (spec §3.2 TUP, A4)


def _low_entropy(state):
    """Near-deterministic policy (log std at the -20 floor): -log pi ~ -19 per action dimension."""
    p = lambda q: set_final_layer(q, slice(ACT_DIM, 2 * ACT_DIM), -20.0)  # noqa: E731
    return state.replace(actor_params=p(state.actor_params), actor_target_params=p(state.actor_target_params))


def _high_entropy(state):
    p = lambda q: set_final_layer(set_final_layer(q, slice(0, ACT_DIM), 0.0), slice(ACT_DIM, 2 * ACT_DIM), 0.0)  # noqa: E731
    return state.replace(actor_params=p(state.actor_params), actor_target_params=p(state.actor_target_params))


@pytest.mark.parametrize(
    "algo,make,overrides,direction",
    [
        ("dsac-e", lambda s: s, dict(rho=1e4), -1),  # budget -2e6: far above it -> alpha falls
        ("dsac-e", _low_entropy, dict(rho=0.01), +1),  # budget -2, trajectory entropy ~ -38 -> alpha rises
        # budget -200, trajectory entropy ~ -38: above it, but -log pi is below the floor rho H0 - 0 = -2 -> rises
        ("dsac-e", _low_entropy, dict(rho=1.0, entropy_floor=0.0), +1),
        ("dsac-e-no-tec", _high_entropy, {}, -1),  # -log pi > H0 = -2 -> alpha falls
        ("dsac-e-no-tec", _low_entropy, {}, +1),
        ("dsac-t", _low_entropy, {}, +1),
        ("sac", _high_entropy, {}, -1),
    ],
    ids=[
        "tec-above",
        "tec-below",
        "tec-above-floor-below",
        "no-tec-above",
        "no-tec-below",
        "dsac-t-below",
        "sac-above",
    ],
)
def test_one_adam_step_moves_alpha_toward_the_constraint(algo, make, overrides, direction):
    state = make(init_state(algo, **overrides))
    new, m = update_fn(algo)(state, make_batch(), key(3), update_actor=True)
    if algo == "dsac-e":
        gap = float(m["train/trajectory_entropy"]) - float(m["train/entropy_budget"])
        if "entropy_floor" in overrides:  # the floor's gap over the discounted budget's 1 / (1 - gamma) steps
            floor = float(m["train/step_entropy_budget"]) - overrides["entropy_floor"]
            assert gap > 0 and float(m["diag/entropy_floor_binds"]) == float(m["diag/entropy_floor_raises"]) == 1.0
            gap = min(gap, (float(m["train/policy_entropy"]) - floor) / (1.0 - 0.99))
    else:
        gap = float(m["train/policy_entropy"]) - (-ACT_DIM)
    assert np.sign(gap) == -direction  # the constructed case is what it claims to be
    delta = float(new.log_alpha) - float(state.log_alpha)
    assert np.sign(delta) == direction
    assert abs(delta) == pytest.approx(3e-4, rel=1e-3)
    # The reported loss is log alpha times the gap (TEC) or -log alpha (log pi + H0) (per step): same sign logic.
    assert float(m["train/loss_temperature"]) == pytest.approx(float(state.log_alpha) * gap, rel=1e-4)


# ---------------------------------------------------------------------------------------------
# 6. variant wiring: every loss the learner reports, recomputed by hand in numpy from the networks


def _np_sample(actor_params, obs, k):
    mean, log_std = (np.asarray(x, np.float64) for x in _actor(actor_params, obs))
    eps = np.asarray(_normal(k, mean.shape), np.float64)
    u = mean + np.exp(log_std) * eps
    log_prob = np.sum(-0.5 * eps**2 - log_std - HALF_LOG_2PI - np.log1p(-(np.tanh(u) ** 2)), axis=-1)
    return np.tanh(u).astype(np.float32), log_prob


def hand_losses(algo, state, batch, k, *, soft_reward_target=None, tec=None, actor_qe=None):
    """Spec §2.2-2.5 / §3.2-3.3 in numpy. The keyword overrides build deliberately WRONG wirings.

    Follows the learner's documented key use: (next action, z, fresh action) = split(key, 3).
    """
    uses_qe = algo in DSAC_E
    soft = algo in ("dsac-t", "sac") if soft_reward_target is None else soft_reward_target
    tec = algo == "dsac-e" if tec is None else tec
    actor_qe = uses_qe if actor_qe is None else actor_qe
    h = state.hyperparams
    gamma, tau, xi, eps = (float(x) for x in (h.gamma, h.tau, h.xi, h.epsilon))
    log_alpha = float(state.log_alpha)
    alpha = np.exp(log_alpha)
    f64 = lambda x: np.asarray(x, np.float64)  # noqa: E731
    reward = f64(batch.reward) * float(h.reward_scale)
    disc = gamma * (1.0 - f64(batch.terminated))
    k_next, k_z, k_new = _split3(k)
    out = {}

    a2, lp2 = _np_sample(state.actor_target_params, batch.next_obs, k_next)  # TARGET policy
    q_next, std_next = (f64(x) for x in _reward(state.reward_critic_target_params, batch.next_obs, a2))
    bonus = -alpha * lp2 if soft else 0.0
    q, std = (f64(x) for x in _reward(state.reward_critic_params, batch.obs, batch.action))
    if algo == "sac":
        y = reward + disc * (q_next.min(0) + bonus)
        out["train/loss_reward_critic"] = sum(np.mean((q[i] - y) ** 2) for i in range(2))
    else:
        z = np.clip(f64(_normal(k_z, (2, B))), -3.0, 3.0)
        sel = np.argmin(q_next, axis=0)
        cols = np.arange(B)
        y_q = reward + disc * (q_next[sel, cols] + bonus)
        y_z = reward + disc * (q_next[sel, cols] + z[sel, cols] * std_next[sel, cols] + bonus)
        old = f64(state.critic_std_running_mean)
        sbar = np.where(old < 0, std.mean(1), (1 - tau) * old + tau * std.mean(1))
        loss = 0.0
        for i in range(2):
            y_zb = q[i] + np.clip(y_z - q[i], -xi * sbar[i], xi * sbar[i])
            terms = (
                -(y_q - q[i]) / (std[i] ** 2 + eps) * q[i]
                - ((q[i] - y_zb) ** 2 - std[i] ** 2) / (std[i] ** 3 + eps) * std[i]
            )
            loss += (sbar[i] ** 2 + eps) * terms.mean()
        out["train/loss_reward_critic"] = loss
    if uses_qe:
        q_e_next = f64(_entropy(state.entropy_critic_target_params, batch.next_obs, a2))[0]
        y_e = disc * (-lp2 + q_e_next)
        q_e = f64(_entropy(state.entropy_critic_params, batch.obs, batch.action))[0]
        out["train/loss_entropy_critic"] = np.mean((q_e - y_e) ** 2)

    a_new, lp = _np_sample(state.actor_params, batch.obs, k_new)  # ONLINE policy, pre-update critics
    q_r_new = f64(_reward(state.reward_critic_params, batch.obs, a_new)[0])
    q_e_new = f64(_entropy(state.entropy_critic_params, batch.obs, a_new))[0] if uses_qe else 0.0
    out["train/loss_actor"] = np.mean(alpha * lp - q_r_new.min(0) - (alpha * q_e_new if actor_qe else 0.0))
    if tec:
        budget = float(h.rho) * -ACT_DIM / (1.0 - gamma)
        out["train/loss_temperature"] = log_alpha * np.mean(-lp + q_e_new - budget)
    else:
        out["train/loss_temperature"] = -log_alpha * np.mean(lp - ACT_DIM)
    out["train/policy_entropy"] = -np.mean(lp)
    return out


def _wiring_state(algo, warm):
    state = init_state(algo, seed=3, init_log_alpha=0.4, gamma=0.9, tau=0.2, rho=2.0, reward_scale=1.5)
    state = state.replace(  # targets distinct from the online networks
        actor_target_params=perturb(state.actor_target_params, 11, 0.3),
        reward_critic_target_params=perturb(state.reward_critic_target_params, 12, 0.3),
        entropy_critic_target_params=perturb(state.entropy_critic_target_params, 13, 0.3),
    )
    if warm:  # sigma_bar past its sentinel, so the blend path is the one used
        state, _ = update_fn(algo)(state, make_batch(seed=99), key(99), update_actor=True)
    return state


def _close(got, want):
    return abs(got - want) <= 2e-4 * abs(want) + 2e-4


@pytest.mark.parametrize("warm", [False, True], ids=["first-batch", "running-mean"])
@pytest.mark.parametrize("algo", ALGOS)
def test_learner_losses_match_hand_computation(algo, warm):
    state = _wiring_state(algo, warm)
    batch = make_batch(seed=4)
    _, metrics = update_fn(algo)(state, batch, key(42), update_actor=True)
    want = hand_losses(algo, state, batch, key(42))
    for name, value in want.items():
        assert _close(float(metrics[name]), value), (name, float(metrics[name]), value)


def test_variant_switches_pick_their_published_terms():
    """Each switch changes exactly the term of the spec §3.2 table, and the hand check can tell."""
    batch = make_batch(seed=4)
    k = key(42)
    # Reward target: dsac-t includes -alpha log pi', dsac-e does not.
    for algo, wrong in (("dsac-e", True), ("dsac-t", False), ("sac", False)):
        state = _wiring_state(algo, warm=True)
        _, m = update_fn(algo)(state, batch, k, update_actor=True)
        got = float(m["train/loss_reward_critic"])
        assert _close(got, hand_losses(algo, state, batch, k)["train/loss_reward_critic"])
        assert not _close(got, hand_losses(algo, state, batch, k, soft_reward_target=wrong)["train/loss_reward_critic"])
    # Temperature: dsac-e uses the trajectory form, dsac-e-no-tec the per-step one.
    for algo, wrong_tec in (("dsac-e", False), ("dsac-e-no-tec", True)):
        state = _wiring_state(algo, warm=True)
        _, m = update_fn(algo)(state, batch, k, update_actor=True)
        got = float(m["train/loss_temperature"])
        assert _close(got, hand_losses(algo, state, batch, k)["train/loss_temperature"])
        assert not _close(got, hand_losses(algo, state, batch, k, tec=wrong_tec)["train/loss_temperature"])
    # Actor: the DSAC-E variants add alpha Q_e (the RES split of the soft Q); dsac-t does not have it.
    for algo in DSAC_E:
        state = _wiring_state(algo, warm=True)
        _, m = update_fn(algo)(state, batch, k, update_actor=True)
        got = float(m["train/loss_actor"])
        assert not _close(got, hand_losses(algo, state, batch, k, actor_qe=False)["train/loss_actor"])


def test_a_new_variant_is_one_entry_in_the_variant_table(monkeypatch):
    """The learner reads only the variant record: an entry that mixes the switches (SAC's scalar critics with
    DSAC-E's entropy critic and trajectory temperature) runs, and its metrics follow each switch."""
    from mjx_tecrl import config as config_mod

    monkeypatch.setitem(config_mod.VARIANTS, "sac-e", config_mod.Variant("sac-e", False, False, True, True))
    mixed = Learner(NETS, "sac-e", "nll", False)
    state = mixed.init(key(0), OBS_DIM, hp())
    assert state.entropy_critic_params is not None  # entropy_critic
    new, m = _jit(mixed.update, static_argnames="update_actor")(state, make_batch(), key(1), update_actor=True)
    assert "train/q_e" in m and "train/entropy_budget" in m and "train/target_entropy" not in m
    assert "train/critic_std" in m and all_finite(new)
    # soft_reward False: the target leaves out -alpha log pi', so the loss differs from plain sac's on the same
    # critic parameters, batch and key
    plain = init_state("sac").replace(reward_critic_params=state.reward_critic_params)
    _, m_sac = update_fn("sac")(plain, make_batch(), key(1), update_actor=False)
    assert float(m["train/loss_reward_critic"]) != pytest.approx(float(m_sac["train/loss_reward_critic"]))
    assert float(m["train/loss_reward_critic"]) > 0


def test_res_and_dsac_t_actor_updates_agree_when_soft_critic_is_the_sum():
    """Spec §3.2 through the learner: a dsac-t whose critic i is exactly Q_r,i + alpha Q_e (block-diagonal
    MLP of double width) and a dsac-e-no-tec with Q_r, Q_e take the same actor and temperature step."""
    res = init_state("dsac-e-no-tec", seed=5, init_log_alpha=-0.5)
    alpha = float(np.exp(-0.5))
    wide = make_networks(ACT_DIM, (32, 32), twin_entropy_critic=False)
    soft_learner = Learner(type(NETS)(NETS.actor, wide.reward_critic, NETS.entropy_critic, 1), "dsac-t", "nll", False)

    def merge(rp, ep):
        r = jax.tree.map(np.asarray, rp)["params"]["MLP_0"]
        e = jax.tree.map(np.asarray, ep)["params"]["MLP_0"]
        d0k = np.concatenate(
            [r["Dense_0"]["kernel"], np.broadcast_to(e["Dense_0"]["kernel"], r["Dense_0"]["kernel"].shape)], -1
        )
        d0b = np.concatenate(
            [r["Dense_0"]["bias"], np.broadcast_to(e["Dense_0"]["bias"], r["Dense_0"]["bias"].shape)], -1
        )
        d1k = np.zeros((2, 32, 32), np.float32)
        d1k[:, :16, :16] = r["Dense_1"]["kernel"]
        d1k[:, 16:, 16:] = e["Dense_1"]["kernel"]
        d1b = np.concatenate(
            [r["Dense_1"]["bias"], np.broadcast_to(e["Dense_1"]["bias"], r["Dense_1"]["bias"].shape)], -1
        )
        d2k = np.zeros((2, 32, 2), np.float32)
        d2k[:, :16, :] = r["Dense_2"]["kernel"]
        d2k[:, 16:, 0] = alpha * e["Dense_2"]["kernel"][:, :, 0]
        d2b = np.array(r["Dense_2"]["bias"])
        d2b[:, 0] += alpha * e["Dense_2"]["bias"][:, 0]
        mk = lambda k, b: {"kernel": np.asarray(k, np.float32), "bias": np.asarray(b, np.float32)}  # noqa: E731
        return {"params": {"MLP_0": {"Dense_0": mk(d0k, d0b), "Dense_1": mk(d1k, d1b), "Dense_2": mk(d2k, d2b)}}}

    soft_critic = merge(res.reward_critic_params, res.entropy_critic_params)
    adam = optax.scale_by_adam()  # what Learner.init uses for every optimiser state
    soft = res.replace(
        reward_critic_params=soft_critic,
        reward_critic_target_params=merge(res.reward_critic_target_params, res.entropy_critic_target_params),
        reward_critic_opt_state=adam.init(soft_critic),
        entropy_critic_params=None,
        entropy_critic_target_params=None,
        entropy_critic_opt_state=adam.init(None),
    )
    batch = make_batch(seed=6)
    # The construction is right: the soft critic's means are Q_r,i + alpha Q_e.
    q_soft, _ = _jit(wide.reward_critics)(soft_critic, batch.obs, batch.action)
    q_r, _ = _reward(res.reward_critic_params, batch.obs, batch.action)
    q_e = _entropy(res.entropy_critic_params, batch.obs, batch.action)
    np.testing.assert_allclose(np.asarray(q_soft), np.asarray(q_r + alpha * q_e), rtol=1e-5, atol=1e-5)

    new_res, m_res = update_fn("dsac-e-no-tec")(res, batch, key(9), update_actor=True)
    new_soft, m_soft = _jit(soft_learner.update, static_argnames="update_actor")(soft, batch, key(9), update_actor=True)
    for name in ("train/loss_actor", "train/loss_temperature", "train/policy_entropy"):
        assert float(m_res[name]) == pytest.approx(float(m_soft[name]), rel=1e-5, abs=1e-5), name
    np.testing.assert_allclose(float(new_res.log_alpha), float(new_soft.log_alpha), rtol=1e-6)
    # Actor step: Adam's first step is lr * g / (|g| + 1e-8), so compare the normalised steps.
    for o, x, y in zip(
        leaves(res.actor_params), leaves(new_res.actor_params), leaves(new_soft.actor_params), strict=True
    ):
        np.testing.assert_allclose((x - o) / 1e-4, (y - o) / 1e-4, atol=2e-3)
        assert np.mean(np.abs((x - o) / 1e-4)) > 0.5  # the steps are real, not both ~0


# ---------------------------------------------------------------------------------------------
# 7. toy problems with known fixed points, run through the real Learner.update


def test_entropy_critic_converges_to_discounted_policy_entropy():
    """One state, never terminating, fixed policy: Q_e* = gamma H / (1 - gamma), H = E[-log pi] (spec §3.2 PIS, A1)."""
    gamma = 0.6
    mean_b, log_std_b = np.array([0.2, -0.3]), np.array([-2.5, -2.0])  # H ~ -1.8: far from 0
    state = init_state(
        "dsac-e", seed=1, gamma=gamma, tau=1.0, entropy_critic_tau=1.0, actor_lr=0.0, alpha_lr=0.0, critic_lr=1e-2
    )
    fix = lambda p: set_final_layer(set_final_layer(p, slice(0, 2), mean_b), slice(2, 4), log_std_b)  # noqa: E731
    state = state.replace(actor_params=fix(state.actor_params), actor_target_params=fix(state.actor_target_params))
    zeros = np.zeros((B, OBS_DIM))
    batch = make_batch(seed=1, terminated=0.0, reward=np.zeros(B), obs=zeros, next_obs=zeros)
    # H of this tanh-Gaussian by Monte Carlo in float64.
    rng = np.random.default_rng(0)
    eps = rng.normal(size=(400_000, 2))
    u = mean_b + np.exp(log_std_b) * eps
    neg_log_pi = -np.sum(-0.5 * eps**2 - log_std_b - HALF_LOG_2PI - np.log1p(-(np.tanh(u) ** 2)), axis=-1)
    h = neg_log_pi.mean()
    want = gamma * h / (1 - gamma)
    up = update_fn("dsac-e")
    q_e = []
    for i in range(1000):
        state, m = up(state, batch, key(i), update_actor=True)
        q_e.append(float(m["train/q_e"]))
    got = np.mean(q_e[-400:])  # single-sample -log pi' makes the targets noisy: average the tail
    assert abs(got - want) < 0.05 * abs(want) + 0.05, (got, want)
    # ... and not the A1 alternative without gamma on the first term, H / (1 - gamma).
    assert abs(got - h / (1 - gamma)) > 0.2 * abs(h)
    assert_trees_equal(state.actor_params, fix(init_state("dsac-e", seed=1).actor_params))  # policy really fixed


@pytest.mark.parametrize("algo", ALGOS)
def test_one_step_constant_reward_probe(algo):
    """Every step terminates with reward 1: Q_r -> 1 (no entropy bonus after termination), Q_e -> 0."""
    state = init_state(algo, critic_lr=1e-2, actor_lr=1e-3, alpha_lr=1e-3)
    batch = make_batch(seed=2, terminated=1.0, reward=np.ones(B))
    up = update_fn(algo)
    _, std0 = _reward(state.reward_critic_params, batch.obs, batch.action)
    for i in range(300):
        state, _ = up(state, batch, key(i), update_actor=True)
    q, std = _reward(state.reward_critic_params, batch.obs, batch.action)
    np.testing.assert_allclose(np.asarray(q), 1.0, atol=0.01)
    if algo in DSAC_E:
        np.testing.assert_allclose(
            np.asarray(_entropy(state.entropy_critic_params, batch.obs, batch.action)), 0.0, atol=0.01
        )
    if algo != "sac":  # the return is deterministic: the distributional critic's std shrinks
        assert float(np.mean(np.asarray(std))) < 0.5 * float(np.mean(np.asarray(std0)))


# --- AdamW (--weight-decay) -------------------------------------------------------------------------------
@pytest.mark.parametrize("algo", ["dsac-e", "sac"])
def test_weight_decay_subtracts_lr_times_decay_times_the_old_weight_from_every_network_step(algo):
    """Decoupled decay (AdamW): with the same gradients, the step with decay wd differs from Adam's by exactly
    -lr wd p_old on every actor and critic weight; the temperature is not decayed."""
    wd = 0.3
    lrs = dict(actor_lr=1e-2, critic_lr=2e-2)
    plain, decayed = init_state(algo, **lrs), init_state(algo, weight_decay=wd, **lrs)
    batch = make_batch()
    new_plain, _ = update_fn(algo)(plain, batch, key(4), update_actor=True)
    new_decayed, _ = update_fn(algo)(decayed, batch, key(4), update_actor=True)
    fields = {"actor_params": lrs["actor_lr"], "reward_critic_params": lrs["critic_lr"]}
    if algo in DSAC_E:
        fields["entropy_critic_params"] = lrs["critic_lr"]
    for name, lr in fields.items():
        trees = leaves(getattr(plain, name)), leaves(getattr(new_plain, name)), leaves(getattr(new_decayed, name))
        for p_old, p_plain, p_decayed in zip(*trees, strict=True):
            np.testing.assert_allclose(p_decayed, p_plain - lr * wd * p_old, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(new_decayed.log_alpha, new_plain.log_alpha)


def test_adamw_step_matches_a_hand_computation():
    """First step: Adam's bias-corrected direction is g / (|g| + 1e-8); AdamW adds wd p, both times lr."""
    from mjx_tecrl.learner import _adam, _adam_step

    p, g = np.array([1.0, -2.0, 0.5], np.float32), np.array([0.4, 0.0, -3.0], np.float32)
    new, _ = _adam_step(p, g, _adam.init(p), 0.1, 0.01)
    expected = p - 0.1 * (g / (np.abs(g) + 1e-8) + 0.01 * p)
    np.testing.assert_allclose(new, expected, rtol=1e-5)  # float32 rounding of the division


# --- observation normalisation: the update normalises once ------------------------------------------------------
@pytest.mark.parametrize("algo", ALGOS)
def test_normalize_obs_learner_on_raw_obs_is_the_plain_learner_on_normalized_obs(algo):
    """With --normalize-obs, critics and actor alike must see (obs - mean) / std once, as the rollout's actor does.
    (A bug fed the actor twice-normalised observations inside the update, so training and acting disagreed.)"""
    from mjx_tecrl.types import NormalizerState, normalize

    rng = np.random.default_rng(3)
    norm = NormalizerState(np.asarray(rng.normal(size=OBS_DIM) * 2, np.float32),
                           np.asarray(rng.uniform(0.2, 5.0, OBS_DIM), np.float32), np.float32(50.0))  # fmt: skip
    state = init_state(algo, actor_lr=1e-2, critic_lr=1e-2).replace(obs_normalizer=norm)
    raw = make_batch(seed=5, obs=rng.normal(size=(B, OBS_DIM)) * 3 + 1, next_obs=rng.normal(size=(B, OBS_DIM)) * 3)
    pre = raw.replace(obs=np.asarray(normalize(norm, raw.obs)), next_obs=np.asarray(normalize(norm, raw.next_obs)))
    normalizing = _jit(Learner(NETS, algo, "nll", True).update, static_argnames="update_actor")
    new_norm, m_norm = normalizing(state, raw, key(6), update_actor=True)
    new_plain, m_plain = update_fn(algo)(state, pre, key(6), update_actor=True)
    for a, b in zip(leaves(new_norm), leaves(new_plain), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    for k in m_plain:
        np.testing.assert_allclose(m_norm[k], m_plain[k], rtol=1e-5, atol=1e-6, err_msg=k)
