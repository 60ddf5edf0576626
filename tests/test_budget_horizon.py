"""`--budget-horizon lived`: dsac-e's entropy budget over the steps an episode still lives (docs/decisions.md).

The entropy critic's second head D learns E[sum_{t>=1} gamma^t 1{alive at t}]; the temperature compares the
trajectory entropy with rho H0 (1 + D(s, a)) instead of rho H0 / (1 - gamma). Checked against a hand computation,
at its fixed points (D = gamma / (1 - gamma) without termination, where the budget is the paper's; 0 when every
step terminates), and wired only where it means something (dsac-e).
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

from mjx_tecrl.config import Config, ConfigError, make_config, validate
from mjx_tecrl.learner import Learner
from mjx_tecrl.networks import make_networks
from mjx_tecrl.types import Transition

OPTS = {"xla_backend_optimization_level": 0}
OBS_DIM, ACT_DIM, B = 3, 2, 8
NETS = make_networks(ACT_DIM, (16, 16), twin_entropy_critic=False, horizon=True)
LEARNER = Learner(NETS, "dsac-e", "nll", False)
UPDATE = jax.jit(LEARNER.update, static_argnames="update_actor", compiler_options=OPTS)
HALF_LOG_2PI = 0.5 * np.log(2.0 * np.pi)


def _state(**overrides):
    return LEARNER.init(jax.random.PRNGKey(0), OBS_DIM, Config(**overrides).hyperparams())


def _batch(seed, terminated, obs=None):
    rng = np.random.default_rng(seed)
    f = lambda x: np.asarray(x, np.float32)  # noqa: E731
    return Transition(
        obs=f(rng.normal(size=(B, OBS_DIM)) if obs is None else obs),
        action=f(np.tanh(rng.normal(size=(B, ACT_DIM)))),
        reward=f(rng.normal(size=B)),
        next_obs=f(rng.normal(size=(B, OBS_DIM)) if obs is None else obs),
        terminated=f(np.broadcast_to(terminated, (B,))),
        truncated=np.zeros(B, np.float32),
    )


def _sample(actor_params, obs, k):
    mean, log_std = (np.asarray(x, np.float64) for x in NETS.actor.apply(actor_params, obs))
    eps = np.asarray(jax.random.normal(k, mean.shape), np.float64)
    u = mean + np.exp(log_std) * eps
    return np.tanh(u).astype(np.float32), np.sum(
        -0.5 * eps**2 - log_std - HALF_LOG_2PI - np.log1p(-(np.tanh(u) ** 2)), axis=-1
    )


def _heads(params, obs, action):
    """The entropy critic's two heads (Q_e, or the deviation under the baseline, and D) at (obs, action), float64."""
    return (np.asarray(x, np.float64)[0] for x in NETS.entropy_critics_and_horizon(params, obs, action))


def _shift_horizon_head(params, shift, head=1):
    """Add `shift` to D's output bias (the entropy critic's last layer: [Q_e, D]; `head` 0 shifts Q_e's)."""
    p = jax.tree.map(lambda x: x, params)  # a copy
    last = p["params"]["MLP_0"]["Dense_2"]
    last["bias"] = last["bias"].at[..., head].add(shift)
    return p


@pytest.mark.parametrize("online_shift, target_shift", [(0.0, 0.0), (-30.0, 30.0), (30.0, -30.0)],
                         ids=["in range", "online below 0, target above", "online above, target below"])  # fmt: skip
def test_lived_budget_losses_match_a_hand_computation(online_shift, target_shift):
    """As by hand; a D out of [0, gamma / (1 - gamma)] enters the budget and D's target clipped to it (the head's
    own regression output is what the loss fits, so it is pulled back into range)."""
    state = _state(gamma=0.9, rho=2.0, init_log_alpha=0.3)
    target = jax.tree.map(lambda x: x + 0.1 * np.random.default_rng(5).normal(size=x.shape).astype(np.float32),
                          state.entropy_critic_target_params)  # fmt: skip
    online = _shift_horizon_head(state.entropy_critic_params, online_shift)
    state = state.replace(entropy_critic_target_params=_shift_horizon_head(target, target_shift),
                          entropy_critic_params=online)  # fmt: skip
    batch = _batch(1, terminated=(0, 0, 1, 0, 0, 1, 0, 0))
    k = jax.random.PRNGKey(9)
    _, m = UPDATE(state, batch, k, update_actor=True)

    k_next, _, k_new = jax.random.split(k, 3)
    gamma, rho = 0.9, 2.0
    disc = gamma * (1.0 - np.asarray(batch.terminated, np.float64))
    a2, lp2 = _sample(state.actor_target_params, batch.next_obs, k_next)
    q_e_next, d_next = _heads(state.entropy_critic_target_params, batch.next_obs, a2)
    q_e, d = _heads(state.entropy_critic_params, batch.obs, batch.action)
    bound = gamma / (1.0 - gamma)
    want_loss = np.mean((q_e - disc * (-lp2 + q_e_next)) ** 2) + np.mean(
        (d - disc * (1.0 + np.clip(d_next, 0, bound))) ** 2
    )
    a_new, lp = _sample(state.actor_params, batch.obs, k_new)
    q_e_new, d_new = _heads(state.entropy_critic_params, batch.obs, a_new)
    d_in_range = np.clip(d_new, 0, bound)
    budget = rho * -ACT_DIM * (1.0 + d_in_range)
    want_temp = 0.3 * np.mean(-lp + q_e_new - budget)
    for name, want in (("train/loss_entropy_critic", want_loss), ("train/loss_temperature", want_temp),
                       ("train/entropy_budget", np.mean(budget)), ("diag/horizon", np.mean(d_in_range)),
                       ("diag/horizon_out_of_range", np.mean(d_in_range != d_new))):  # fmt: skip
        assert abs(float(m[name]) - want) <= 2e-4 * abs(want) + 2e-4, (name, float(m[name]), want)
    if online_shift:  # the shifted case is out of range everywhere: the budget sits at one end of its range
        assert float(m["diag/horizon_out_of_range"]) == 1.0
        assert np.allclose(budget, rho * -ACT_DIM * (1.0 + (bound if online_shift > 0 else 0.0)))


BASELINE_UPDATE = jax.jit(Learner(NETS, "dsac-e", "nll", False, True).update, static_argnames="update_actor",
                          compiler_options=OPTS)  # fmt: skip


def test_entropy_baseline_losses_match_a_hand_computation():
    """`--entropy-baseline`: the head learns the deviation R = Q_e - b D, b = mean(-log pi) (its target: -log pi - b
    per step), and Q_e = R + b D enters the actor's loss, the temperature's gap and the logged q_e; as by hand."""
    gamma, rho = 0.9, 2.0
    state = _state(gamma=gamma, rho=rho, init_log_alpha=0.3)
    target = jax.tree.map(lambda x: x + 0.1 * np.random.default_rng(5).normal(size=x.shape).astype(np.float32),
                          state.entropy_critic_target_params)  # fmt: skip
    state = state.replace(entropy_critic_target_params=_shift_horizon_head(target, 2.0))
    batch = _batch(1, terminated=(0, 0, 1, 0, 0, 1, 0, 0))
    k = jax.random.PRNGKey(9)
    _, m = BASELINE_UPDATE(state, batch, k, update_actor=True)

    k_next, _, k_new = jax.random.split(k, 3)
    bound = gamma / (1.0 - gamma)
    disc = gamma * (1.0 - np.asarray(batch.terminated, np.float64))
    a2, lp2 = _sample(state.actor_target_params, batch.next_obs, k_next)
    r_next, d_next = _heads(state.entropy_critic_target_params, batch.next_obs, a2)
    r, d = _heads(state.entropy_critic_params, batch.obs, batch.action)
    b_next = np.mean(-lp2)
    want_loss = np.mean((r - disc * (-lp2 - b_next + r_next)) ** 2) + np.mean(
        (d - disc * (1.0 + np.clip(d_next, 0, bound))) ** 2
    )
    a_new, lp = _sample(state.actor_params, batch.obs, k_new)
    r_new, d_new = _heads(state.entropy_critic_params, batch.obs, a_new)
    d_new = np.clip(d_new, 0, bound)
    q_e_new = r_new + np.mean(-lp) * d_new  # the current policy's mean entropy over the D steps, plus R
    want_temp = 0.3 * np.mean(-lp + q_e_new - rho * -ACT_DIM * (1.0 + d_new))
    for name, want in (("train/loss_entropy_critic", want_loss), ("train/loss_temperature", want_temp),
                       ("train/q_e", np.mean(r + b_next * np.clip(d, 0, bound))),
                       ("train/trajectory_entropy", np.mean(-lp + q_e_new))):  # fmt: skip
        assert abs(float(m[name]) - want) <= 2e-4 * abs(want) + 2e-4, (name, float(m[name]), want)


def test_the_baseline_actor_step_does_not_differentiate_the_horizon():
    """With the baseline the actor maximises R + b sg(D): b and D are detached, so D's values and its slope in the
    action leave the actor's step unchanged (through b D, with b < 0, it would seek actions whose D reads low; D at
    the actor's actions fell to 88-204 on Swimmer before D was detached). Changing only D's output weights (in range)
    must leave the new actor parameters as they were, and move the temperature's loss (the budget reads D)."""
    state = _state(gamma=0.9, rho=2.0, init_log_alpha=0.3)
    base = _shift_horizon_head(state.entropy_critic_params, 4.5)
    other = jax.tree.map(lambda x: x, base)  # a copy: D's output column redrawn, R's untouched
    kernel = other["params"]["MLP_0"]["Dense_2"]["kernel"]
    other["params"]["MLP_0"]["Dense_2"]["kernel"] = kernel.at[..., 1].set(
        np.random.default_rng(3).normal(size=kernel[..., 1].shape).astype(np.float32)
    )
    batch, k = _batch(1, terminated=0), jax.random.PRNGKey(9)
    (new_a, m_a), (new_b, m_b) = (
        BASELINE_UPDATE(state.replace(entropy_critic_params=p), batch, k, update_actor=True) for p in (base, other)
    )
    for m in (m_a, m_b):
        assert float(m["diag/horizon_out_of_range"]) == 0.0
    (_, d_a), (_, d_b) = _heads(base, batch.obs, batch.action), _heads(other, batch.obs, batch.action)
    assert np.max(np.abs(d_a - d_b)) > 0.5  # D does differ
    assert abs(float(m_a["train/loss_temperature"]) - float(m_b["train/loss_temperature"])) > 1e-3
    for x, y in zip(jax.tree.leaves(new_a.actor_params), jax.tree.leaves(new_b.actor_params), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _shift_log_std(actor_params, shift):
    p = jax.tree.map(lambda x: x, actor_params)  # a copy
    last = p["params"]["MLP_0"]["Dense_2"]
    last["bias"] = last["bias"].at[..., ACT_DIM:].add(shift)
    return p


@pytest.mark.parametrize("baseline", [False, True])
def test_a_shift_of_the_policy_entropy_reaches_the_trajectory_entropy_at_once_with_the_baseline(baseline):
    """The lag the baseline removes: narrow the policy (log std - 1) under the same critics (blind to the action).
    Without it Q_e still reads the wider policy, so the trajectory entropy moves by this step's change alone; with
    it, by that change over 1 + D steps (b D moves with b)."""
    update = BASELINE_UPDATE if baseline else UPDATE
    state = _state(gamma=0.9, rho=2.0, init_log_alpha=0.3)
    critic = _shift_horizon_head(state.entropy_critic_params, 5.0)  # D ~ 5
    first = critic["params"]["MLP_0"]["Dense_0"]  # blind to the action, so the narrower policy's actions read the same
    first["kernel"] = first["kernel"].at[..., OBS_DIM:, :].set(0.0)
    state = state.replace(entropy_critic_params=critic)
    narrow = state.replace(actor_params=_shift_log_std(state.actor_params, -1.0))
    batch, k = _batch(1, terminated=0.0), jax.random.PRNGKey(9)
    m0, m1 = (update(s, batch, k, update_actor=True)[1] for s in (state, narrow))
    d_h = float(m1["train/policy_entropy"]) - float(m0["train/policy_entropy"])
    d_traj = float(m1["train/trajectory_entropy"]) - float(m0["train/trajectory_entropy"])
    steps = 1.0 + float(m0["diag/horizon"]) if baseline else 1.0
    assert d_h < -1.0 and float(m0["diag/horizon"]) > 3.0  # the constructed case is what it claims to be
    assert d_traj == pytest.approx(d_h * steps, rel=1e-4, abs=1e-4)


# a floor that raises alpha (binds and raises): test_learner's "tec-above-floor-below"
@pytest.mark.parametrize(
    "floor, q_e_shift, binds, raises",
    [
        (-1.0, 20.0, False, False),
        (0.0, 0.0, False, False),
        (0.0, 20.0, True, False),
        (1.5, 20.0, True, False),
        (1.5, -20.0, False, False),
    ],
)
def test_entropy_floor_takes_the_smaller_gap_counted_over_the_lived_steps(floor, q_e_shift, binds, raises):
    """`--entropy-floor`: the temperature's gap is min(trajectory gap, (1 + mean D) (mean(-log pi) - (rho H0 -
    floor))), as by hand; an entropy critic that reads high (shifted Q_e: one that trails a falling entropy) leaves
    the floor to set the gap; negative: off, the spec's loss."""
    gamma, rho = 0.9, 0.5
    state = _state(gamma=gamma, rho=rho, init_log_alpha=0.3, entropy_floor=floor)
    state = state.replace(entropy_critic_params=_shift_horizon_head(state.entropy_critic_params, q_e_shift, head=0))
    batch = _batch(1, terminated=(0, 0, 1, 0, 0, 1, 0, 0))
    k = jax.random.PRNGKey(9)
    _, m = UPDATE(state, batch, k, update_actor=True)
    _, _, k_new = jax.random.split(k, 3)
    a_new, lp = _sample(state.actor_params, batch.obs, k_new)
    q_e, d = _heads(state.entropy_critic_params, batch.obs, a_new)
    d = np.clip(d, 0.0, gamma / (1.0 - gamma))
    trajectory_gap = np.mean(-lp + q_e - rho * -ACT_DIM * (1.0 + d))
    floor_gap = (1.0 + np.mean(d)) * (np.mean(-lp) - (rho * -ACT_DIM - floor)) if floor >= 0 else np.inf
    assert (floor_gap < trajectory_gap) == binds, (floor_gap, trajectory_gap)
    want = 0.3 * min(trajectory_gap, floor_gap)
    assert abs(float(m["train/loss_temperature"]) - want) <= 2e-4 * abs(want) + 2e-4, (
        float(m["train/loss_temperature"]),
        want,
    )
    assert (floor_gap < min(trajectory_gap, 0.0)) == raises, (floor_gap, trajectory_gap)
    assert float(m["diag/entropy_floor_binds"]) == float(binds)
    assert float(m["diag/entropy_floor_raises"]) == float(raises)
    assert float(m["train/step_entropy_budget"]) == pytest.approx(rho * -ACT_DIM)


@pytest.mark.parametrize("terminated, horizon", [(0.0, 0.6 / 0.4), (1.0, 0.0)], ids=["never", "every step"])
def test_horizon_head_converges_to_the_discounted_steps_still_to_come(terminated, horizon):
    """One state, gamma 0.6: D -> gamma / (1 - gamma) without termination (so the budget is rho H0 / (1 - gamma),
    the paper's), D -> 0 when every step terminates (the budget of the step itself, rho H0)."""
    state = _state(gamma=0.6, tau=1.0, entropy_critic_tau=1.0, actor_lr=0.0, alpha_lr=0.0, critic_lr=1e-2)
    batch = _batch(2, terminated=terminated, obs=np.zeros((B, OBS_DIM)))
    d, budget = [], []
    for i in range(1200):
        state, m = UPDATE(state, batch, jax.random.PRNGKey(i), update_actor=True)
        d.append(float(m["diag/horizon"]))  # D at fresh actions: the temperature's budget uses these
        budget.append(float(m["train/entropy_budget"]))
    # Adam at lr 1e-2 keeps the head moving by a few percent: average the tail (as the Q_e fixed-point test)
    assert abs(np.mean(d[-500:]) - horizon) < 0.03 * horizon + 0.01, np.mean(d[-500:])
    want_budget = 1.0 * -ACT_DIM * (1.0 + horizon)
    assert abs(np.mean(budget[-500:]) - want_budget) < 0.03 * abs(want_budget), np.mean(budget[-500:])


def test_lived_budget_builds_the_head_for_dsac_e_only_and_refuses_unknown_values():
    for algo in ("dsac-e", "dsac-e-no-tec", "dsac-t", "sac"):
        learner = Learner.from_config(Config(algo=algo, budget_horizon="lived"), ACT_DIM)
        assert learner.networks.entropy_critic.horizon is (algo == "dsac-e")
    assert Learner.from_config(Config(algo="dsac-e"), ACT_DIM).networks.entropy_critic.horizon is False
    with pytest.raises(ConfigError, match="--budget-horizon 'episode' is unknown; allowed: discounted, lived"):
        validate(make_config(env="hopper", budget_horizon="episode"))
    for algo, horizon in (("dsac-e", "discounted"), ("dsac-t", "lived"), ("dsac-e-no-tec", "lived")):
        with pytest.raises(ConfigError, match=f"--entropy-baseline needs .* not --algo {algo} --budget-horizon"):
            validate(make_config(env="hopper", algo=algo, budget_horizon=horizon, entropy_baseline=True))
    validate(make_config(env="hopper", entropy_baseline=True))  # hopper's preset: dsac-e, lived
    assert Learner.from_config(make_config(env="hopper", entropy_baseline=True), ACT_DIM).entropy_baseline is True
