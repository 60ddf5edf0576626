"""Parity of the MJX Gymnasium tasks with Gymnasium's own v5 environments (MuJoCo C, float64).

- one step: from the same (qpos, qvel) and action, the next observation, reward and termination agree;
- reset: the initial observations have the same mean and std;
- episodes (slow): a random policy and a fixed linear controller give the same return and length distributions.

The default run covers the contact-free tasks (inverted_pendulum, the default task, among them) and hopper
(contacts, termination); `-m slow` runs every task, the `fast` physics, the full state counts and the
episode-level parity.
"""

from __future__ import annotations

import dataclasses
import warnings

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from mjx_tecrl.envs import registry
from mjx_tecrl.envs.gym_tasks import TASKS
from scipy import stats

# XLA's LLVM backend at -O0: these programs run for well under a second, compiling them is the cost.
COMPILE = {"xla_backend_optimization_level": 0}


@dataclasses.dataclass(frozen=True)
class Tol:
    """One-step tolerance: |mjx - gym| <= rtol * (|gym| + spread), per observation component and for the reward,
    where `spread` is that component's std over the test states (so values near zero are judged against the
    component's own scale, not against zero). `share` of the states must pass (1.0: all of them)."""

    rtol: float
    reward_rtol: float
    why: str
    share: float = 1.0


# MJX runs in float32, MuJoCo C in float64, both over `frame_skip` RK4 (Euler: halfcheetah, pusher) steps.
# Contact-free tasks agree to float32 rounding (~1e-6 of the spread); with contacts both solve the same convex
# constraint problem (MJX: Newton to tolerance 1e-8 in float32), and a stiff impact within the step can amplify
# the rounding. Measured worst cases over 200 states: docs/envs.md. Ant and Humanoid's cfrc_ext observations
# and the pyramidal-cone contact forces make a few states per hundred diverge at impacts: a share of the
# states is checked tightly there, and the episode-level tests below check the rest.
FAITHFUL_TOL = {
    "inverted_pendulum": Tol(1e-4, 1e-4, "contact-free (slider and hinge limits only), float32"),
    "inverted_double_pendulum": Tol(1e-4, 1e-4, "contact-free, float32"),
    "reacher": Tol(1e-4, 1e-4, "contact-free, float32"),
    "swimmer": Tol(1e-4, 1e-4, "contact-free (fluid drag), float32"),
    "hopper": Tol(1e-3, 1e-3, "foot contact, float32 through the Newton solve"),
    "walker2d": Tol(1e-3, 1e-3, "foot contacts, float32 through the Newton solve"),
    "halfcheetah": Tol(1e-3, 1e-3, "contacts, float32 through the Newton solve"),
    "pusher": Tol(1e-3, 1e-3, "arm-object contact, float32"),
    "ant": Tol(1e-3, 1e-3, "impacts amplify float32 rounding; cfrc_ext observed", share=0.9),
    "humanoid": Tol(1e-3, 1e-3, "impacts amplify float32 rounding; cfrc_ext observed", share=0.9),
    "humanoidstandup": Tol(1e-3, 1e-3, "impacts amplify float32 rounding; cfrc_ext observed", share=0.9),
}
# `fast` (one Newton iteration) leaves the contact problem partly unsolved: only a loose agreement remains, and on
# the contact-rich tasks only for some of the states. The shares are the measured ones (bench/parity.py, 100
# states; docs/envs.md) rounded down by 0.1: they guard against `fast` drifting further, not for parity.
FAST_TOL = {name: Tol(1e-1, 1e-1, "one solver iteration", share=0.9) for name in FAITHFUL_TOL}
FAST_TOL |= {
    "halfcheetah": Tol(1e-1, 1e-1, "one solver iteration; 80% measured", share=0.7),
    "walker2d": Tol(1e-1, 1e-1, "one solver iteration; 92% measured", share=0.8),
    "ant": Tol(1e-1, 1e-1, "one solver iteration; 33% measured", share=0.2),
    "humanoid": Tol(1e-1, 1e-1, "one solver iteration; 69% measured", share=0.5),
}
# HumanoidStandup starts lying on the floor: with one solver iteration 7% of the states agree within 0.1, so
# `fast` is another task there and there is no parity to assert (docs/envs.md says so).
FAST_UNCHECKED = {"humanoidstandup"}
# The slow share of the tests: fewer states where the MJX step is expensive on the CPU.
SLOW_STATES = {"ant": 200, "humanoid": 200, "humanoidstandup": 200}


def gym_env(name: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return gym.make(TASKS[name][1]).unwrapped


def to_ctrl(env, action: np.ndarray) -> np.ndarray:
    """Agent actions in [-1, 1] -> the actuators' control range, as the registry's wrapper maps them."""
    low, high = env.action_space.low.astype(np.float64), env.action_space.high.astype(np.float64)
    return low + (np.clip(action, -1.0, 1.0).astype(np.float64) + 1.0) / 2.0 * (high - low)


def gym_transitions(name: str, n: int, seed: int = 0, stride: int = 1) -> dict[str, np.ndarray]:
    """`n` (qpos, qvel, action) -> (obs, reward, terminated) from Gymnasium along random-action episodes.

    Every `stride`-th step is kept, so long episodes contribute states from their middle and end too.
    Each kept step starts from `set_state(qpos, qvel)`, which the MJX side reproduces with `reset_to`.
    """
    env = gym_env(name)
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    rows: dict[str, list] = {k: [] for k in ("qpos", "qvel", "action", "obs", "reward", "terminated")}
    t = 0
    while len(rows["qpos"]) < n:
        qpos, qvel = env.data.qpos.copy(), env.data.qvel.copy()
        action = rng.uniform(-1.0, 1.0, env.action_space.shape).astype(np.float32)
        env.set_state(qpos, qvel)
        obs, reward, terminated, _, _ = env.step(to_ctrl(env, action))
        t += 1
        if t % stride == 0:
            for k, v in zip(rows, (qpos, qvel, action, obs, reward, terminated), strict=True):
                rows[k].append(v)
        if terminated or t >= 1000:
            env.reset()
            t = 0
    return {k: np.asarray(v) for k, v in rows.items()}


def gym_reset_obs(name: str, n: int, seed: int = 1) -> np.ndarray:
    env = gym_env(name)
    env.reset(seed=seed)
    return np.stack([env.reset()[0] for _ in range(n)])


def mjx_one_step_and_resets(env, data: dict[str, np.ndarray], num_resets: int, key: jax.Array):
    """One compiled program: step from each (qpos, qvel, action), and `num_resets` fresh resets."""

    def program(qpos, qvel, action, keys):
        nxt = jax.vmap(lambda q, v, a: env.step(env.unwrapped.reset_to(q, v), a))(qpos, qvel, action)
        return nxt.obs, nxt.reward, nxt.done, jax.vmap(env.reset)(keys).obs

    args = (
        jnp.asarray(data["qpos"], jnp.float32),
        jnp.asarray(data["qvel"], jnp.float32),
        jnp.asarray(data["action"]),
        jax.random.split(key, num_resets),
    )
    fn = jax.jit(program).lower(*args).compile(COMPILE)
    return tuple(np.asarray(x, np.float64) for x in fn(*args))


def relative_errors(mjx: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """|mjx - ref| / (|ref| + spread of ref over the states), per state (the max over components)."""
    ref2, mjx2 = ref.reshape(len(ref), -1), mjx.reshape(len(mjx), -1)
    spread = ref2.std(0) + 1e-9
    return np.max(np.abs(mjx2 - ref2) / (np.abs(ref2) + spread), axis=1)


def one_step_figures(tol: Tol, data, obs, reward, done) -> tuple[dict[str, float], np.ndarray]:
    """The one-step error figures and, per state, whether it is within `tol` (bench/parity.py tabulates them)."""
    assert obs.shape == data["obs"].shape, (obs.shape, data["obs"].shape)
    obs_err, reward_err = relative_errors(obs, data["obs"]), relative_errors(reward, data["reward"])
    ok = (obs_err <= tol.rtol) & (reward_err <= tol.reward_rtol) & ((done > 0.5) == data["terminated"])
    figures = {
        "obs_err_median": float(np.median(obs_err)),
        "obs_err_max": float(obs_err.max()),
        "reward_err_max": float(reward_err.max()),
        "share_within_tol": float(ok.mean()),
        "terminated_mismatch": int(np.sum((done > 0.5) != data["terminated"])),
    }
    return figures, ok


def check_one_step(name: str, tol: Tol, data, obs, reward, done) -> dict[str, float]:
    figures, ok = one_step_figures(tol, data, obs, reward, done)
    print(f"\n{name}: {figures}")
    assert ok.mean() >= tol.share, (
        f"{name}: {ok.mean():.1%} of the states within {tol} (need {tol.share:.0%}): {figures}"
    )
    return figures


def check_reset_distribution(name: str, mjx_obs: np.ndarray, gym_obs: np.ndarray) -> None:
    """Means agree within 5 standard errors (+ float32 rounding); stds within 8% (about 5 of their own SEs)."""
    n_m, n_g = len(mjx_obs), len(gym_obs)
    mean_m, mean_g = mjx_obs.mean(0), gym_obs.mean(0)
    std_m, std_g = mjx_obs.std(0), gym_obs.std(0)
    se = np.sqrt(std_m**2 / n_m + std_g**2 / n_g)
    float32 = 1e-6 * (1.0 + np.abs(mean_g))
    bad_mean = np.abs(mean_m - mean_g) > 5.0 * se + float32
    assert not bad_mean.any(), f"{name} reset obs mean differs at {np.flatnonzero(bad_mean)}"
    bad_std = np.abs(std_m - std_g) > 0.08 * std_g + float32
    assert not bad_std.any(), (
        f"{name} reset obs std differs at {np.flatnonzero(bad_std)}: {std_m[bad_std]} vs {std_g[bad_std]}"
    )


def run_parity(name: str, physics: str, tol: Tol, n_states: int, stride: int = 1, n_resets: int = 1000) -> None:
    env = registry.make(name, physics)
    data = gym_transitions(name, n_states, stride=stride)
    obs, reward, done, reset_obs = mjx_one_step_and_resets(env, data, n_resets, jax.random.PRNGKey(0))
    assert env.observation_size == TASKS[name][0].observation_dim == gym_env(name).observation_space.shape[0]
    check_one_step(name, tol, data, obs, reward, done)
    if physics == "faithful":
        check_reset_distribution(name, reset_obs, gym_reset_obs(name, n_resets))


# The default run: the contact-free tasks (about 20 s each here) and hopper (contacts, termination). The other
# contact-rich tasks' MJX programs take minutes each on the 2-core CPU (pusher 150 s): `-m slow`.
DEFAULT_TASKS = ["inverted_pendulum", "inverted_double_pendulum", "reacher", "swimmer", "hopper"]


@pytest.mark.parametrize("name", DEFAULT_TASKS)
def test_one_step_and_reset_parity_with_gymnasium(name):
    run_parity(name, "faithful", FAITHFUL_TOL[name], n_states=100)


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, physics",
    [(n, ph) for ph in ("faithful", "fast") for n in TASKS if not (ph == "fast" and n in FAST_UNCHECKED)],
)
def test_one_step_and_reset_parity_every_task(name, physics):
    """Every task, states from the middle of long episodes too (stride 5), the full count of states."""
    tol = (FAITHFUL_TOL if physics == "faithful" else FAST_TOL)[name]
    run_parity(name, physics, tol, n_states=SLOW_STATES.get(name, 500), stride=5)


# --- episode-level parity (slow) ----------------------------------------------------------------------
def linear_policy(obs_dim: int, act_dim: int, seed: int = 0) -> np.ndarray:
    """A fixed deterministic controller a = tanh(obs @ W), W drawn once from a seeded Gaussian."""
    return np.random.default_rng(seed).normal(0.0, 0.5 / np.sqrt(obs_dim), (obs_dim, act_dim)).astype(np.float32)


def gym_episodes(name: str, policy: str, n: int, max_len: int = 1000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Returns and lengths of `n` Gymnasium episodes (time limit `max_len`) under `policy` (random or linear)."""
    env = gym_env(name)
    rng = np.random.default_rng(seed)
    w = linear_policy(env.observation_space.shape[0], env.action_space.shape[0])
    returns, lengths = np.zeros(n), np.zeros(n, int)
    for i in range(n):
        obs, _ = env.reset(seed=seed + i)
        for t in range(max_len):
            a = rng.uniform(-1.0, 1.0, w.shape[1]) if policy == "random" else np.tanh(obs @ w)
            obs, reward, terminated, _, _ = env.step(to_ctrl(env, a))
            returns[i] += reward
            lengths[i] = t + 1
            if terminated:
                break
    return returns, lengths


def mjx_episodes(env, policy: str, n: int, max_len: int = 1000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The same in MJX: `n` environments in one scan of `max_len` steps; each counts its first episode only."""
    w = jnp.asarray(linear_policy(env.observation_size, env.action_size))

    def program(key):
        k_reset, k_act = jax.random.split(key)
        state = jax.vmap(env.reset)(jax.random.split(k_reset, n))

        def body(carry, k):
            state, alive, ret, length = carry
            if policy == "random":
                action = jax.random.uniform(k, (n, env.action_size), minval=-1.0, maxval=1.0)
            else:
                action = jnp.tanh(state.obs @ w)
            nxt = jax.vmap(env.step)(state, action)
            ret = ret + jnp.where(alive, nxt.reward, 0.0)
            length = length + alive.astype(jnp.int32)
            return (nxt, alive & (nxt.done < 0.5), ret, length), None

        init = (state, jnp.ones(n, bool), jnp.zeros(n), jnp.zeros(n, jnp.int32))
        (_, _, ret, length), _ = jax.lax.scan(body, init, jax.random.split(k_act, max_len))
        return ret, length

    key = jax.random.PRNGKey(seed)
    fn = jax.jit(program).lower(key).compile(COMPILE)
    ret, length = fn(key)
    return np.asarray(ret, np.float64), np.asarray(length)


def check_episode_distributions(name: str, policy: str, mjx: tuple, gym_: tuple, rel_margin: float) -> None:
    """Means agree within 4 standard errors of the difference plus `rel_margin` of the Gymnasium mean (the
    physics' own difference), and a two-sample Kolmogorov-Smirnov test does not reject at the 0.1% level."""
    for what, m, g in zip(("return", "length"), mjx, gym_, strict=True):
        se = np.sqrt(m.var() / len(m) + g.var() / len(g))
        margin = 4.0 * se + rel_margin * abs(g.mean())
        assert abs(m.mean() - g.mean()) <= margin, (
            f"{name} {policy} {what}: {m.mean():.3f} vs {g.mean():.3f} +- {margin:.3f}"
        )
        if m.std() > 0 or g.std() > 0:
            p = stats.ks_2samp(m, g).pvalue
            assert p > 1e-3, f"{name} {policy} {what} distributions differ (KS p = {p:.2g})"


# Contact-rich tasks, where one-step differences compound over an episode. rel_margin: how far the mean
# return and length may differ beyond sampling noise (4 standard errors), as a share of Gymnasium's mean.
EPISODE_TASKS = ["hopper", "walker2d", "halfcheetah", "ant", "humanoid"]
EPISODE_MARGIN = 0.05


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["random", "linear"])
@pytest.mark.parametrize("name", EPISODE_TASKS)
def test_episode_return_and_length_distributions_match_gymnasium(name, policy):
    n = 100
    mjx = mjx_episodes(registry.make(name), policy, n)
    gym_ = gym_episodes(name, policy, n)
    for side, (ret, length) in (("mjx", mjx), ("gym", gym_)):
        print(f"\n{name} {policy} {side}: return {ret.mean():.2f} +- {ret.std():.2f}, length {length.mean():.1f}")
    check_episode_distributions(name, policy, mjx, gym_, EPISODE_MARGIN)
