"""Tanh-squashed Gaussian (spec §2.1, §2.9; §8: actions in [-1, 1], no action-scale term)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mjx_tecrl import distributions as D


def _fast_jit(fn):
    # Compile speed only (the shared CPU spends its time in LLVM); same program.
    return jax.jit(fn, compiler_options={"xla_backend_optimization_level": 0})


def _np_log_prob(mean, log_std, u):
    """Change of variables in float64: log N(u; mean, std) - log(1 - tanh(u)^2), summed over the last axis."""
    mean, log_std, u = (np.asarray(x, np.float64) for x in (mean, log_std, u))
    std = np.exp(log_std)
    gauss = -0.5 * ((u - mean) / std) ** 2 - log_std - 0.5 * np.log(2 * np.pi)
    a = np.tanh(u)
    return np.sum(gauss - np.log1p(-(a**2)), axis=-1)


def test_log_prob_integrates_to_one_over_actions_1d():
    mean, log_std = 0.3, np.log(0.6)
    a = np.linspace(-1.0 + 1e-7, 1.0 - 1e-7, 200_001)  # grid in ACTION space
    u = np.arctanh(a)
    lp = D.log_prob_pre_tanh(
        jnp.full((a.size, 1), mean, jnp.float32),
        jnp.full((a.size, 1), log_std, jnp.float32),
        jnp.asarray(u[:, None], jnp.float32),
    )
    density = np.exp(np.asarray(lp, np.float64))
    assert np.trapezoid(density, a) == pytest.approx(1.0, abs=2e-3)
    # The density is a density over a (it has the Jacobian): dropping the log-det would integrate to
    # something else, so check that this test could fail.
    gauss_only = np.exp(np.asarray(lp, np.float64) + np.log1p(-(a**2)))
    assert abs(np.trapezoid(gauss_only, a) - 1.0) > 0.1


def test_log_prob_integrates_to_one_over_actions_2d():
    mean = np.array([-0.4, 0.5])
    log_std = np.log(np.array([0.5, 0.7]))
    g = np.linspace(-1.0 + 1e-6, 1.0 - 1e-6, 801)
    a1, a2 = np.meshgrid(g, g, indexing="ij")
    u = np.arctanh(np.stack([a1, a2], axis=-1)).reshape(-1, 2)
    lp = D.log_prob_pre_tanh(
        jnp.broadcast_to(jnp.asarray(mean, jnp.float32), u.shape),
        jnp.broadcast_to(jnp.asarray(log_std, jnp.float32), u.shape),
        jnp.asarray(u, jnp.float32),
    )
    density = np.exp(np.asarray(lp, np.float64)).reshape(a1.shape)
    assert np.trapezoid(np.trapezoid(density, g, axis=1), g) == pytest.approx(1.0, abs=5e-3)


def test_log_prob_matches_change_of_variables_numpy():
    rng = np.random.default_rng(0)
    mean = rng.normal(size=(5, 3)) * 1.5
    log_std = rng.uniform(-3.0, 0.5, size=(5, 3))
    u = rng.normal(size=(5, 3)) * 3.0  # includes |u| up to ~7, where 1 - tanh^2 is ~1e-6
    got = D.log_prob_pre_tanh(
        jnp.asarray(mean, jnp.float32), jnp.asarray(log_std, jnp.float32), jnp.asarray(u, jnp.float32)
    )
    want = _np_log_prob(mean, log_std, u)
    assert got.shape == (5,)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-4, atol=1e-3)


def test_sample_shapes_range_and_log_prob_consistency():
    key = jax.random.PRNGKey(1)
    mean = jnp.asarray([[0.1, -0.5, 1.0], [0.0, 0.3, -2.0]], jnp.float32)
    log_std = jnp.asarray([[-1.0, 0.0, 0.5], [-2.0, -0.5, 0.2]], jnp.float32)
    action, log_prob = D.sample(key, mean, log_std)
    assert action.shape == (2, 3) and log_prob.shape == (2,)
    assert np.all(np.abs(np.asarray(action)) <= 1.0)
    # log_prob is the density of the returned action (recover u = atanh(a) in float64).
    u = np.arctanh(np.asarray(action, np.float64))
    np.testing.assert_allclose(np.asarray(log_prob), _np_log_prob(mean, log_std, u), rtol=1e-3, atol=1e-3)


def test_sample_is_reparameterised_gaussian_in_u():
    n = 20_000
    mean = jnp.full((n, 2), jnp.asarray([0.4, -0.7]), jnp.float32)
    log_std = jnp.full((n, 2), jnp.log(jnp.asarray([0.3, 0.8])), jnp.float32)
    action, _ = _fast_jit(D.sample)(jax.random.PRNGKey(2), mean, log_std)
    u = np.arctanh(np.clip(np.asarray(action, np.float64), -1 + 1e-7, 1 - 1e-7))
    np.testing.assert_allclose(u.mean(0), [0.4, -0.7], atol=0.03)
    np.testing.assert_allclose(u.std(0), [0.3, 0.8], rtol=0.03)
    # Reparameterised: d a / d mean = 1 - tanh(u)^2 > 0 per sample.
    g = _fast_jit(jax.grad(lambda m: jnp.sum(D.sample(jax.random.PRNGKey(3), m, log_std[:4])[0])))(mean[:4])
    assert np.all(np.asarray(g) > 0)


def test_mode_is_tanh_of_mean():
    mean = jnp.asarray([[-3.0, -0.2, 0.0, 0.7, 25.0]], jnp.float32)
    np.testing.assert_allclose(np.asarray(D.mode(mean)), np.tanh(np.asarray(mean, np.float64)), rtol=1e-6, atol=1e-7)
    # and it ignores the spread entirely: it is not a sample.
    np.testing.assert_array_equal(np.asarray(D.mode(mean)), np.asarray(jnp.tanh(mean)))
    assert float(D.mode(mean)[0, 2]) == 0.0


@pytest.mark.parametrize("log_std", [D.LOG_STD_MIN, 0.0, D.LOG_STD_MAX])
@pytest.mark.parametrize("mean_value", [-80.0, -20.0, 0.0, 20.0, 80.0])
def test_no_nan_at_tanh_limits_and_log_std_floor(mean_value, log_std):
    mean = jnp.full((4, 3), mean_value, jnp.float32)
    ls = jnp.full((4, 3), log_std, jnp.float32)

    def f(m, s):
        a, lp = D.sample(jax.random.PRNGKey(4), m, s)
        return jnp.sum(lp) + jnp.sum(a), (a, lp)

    (val, (a, lp)), grads = _fast_jit(jax.value_and_grad(f, argnums=(0, 1), has_aux=True))(mean, ls)
    for x in (val, a, lp, *grads):
        assert np.all(np.isfinite(np.asarray(x)))
    assert np.all(np.abs(np.asarray(a)) <= 1.0)


def test_log_prob_asymptotics_for_huge_u():
    # For |u| >> 1, -log(1 - tanh^2 u) = 2|u| - 2 log 2 + O(e^{-2|u|}); the naive formula gives inf.
    for u in (30.0, -30.0, 100.0, -100.0):
        lp = D.log_prob_pre_tanh(jnp.asarray([[u]]), jnp.asarray([[0.0]]), jnp.asarray([[u]]))
        want = -0.5 * np.log(2 * np.pi) + 2 * abs(u) - 2 * np.log(2.0)
        assert float(lp[0]) == pytest.approx(want, rel=1e-5)


def test_log_std_floor_density_value():
    # At log_std = -20 the Gaussian part is log_std-dominated: log pi(u = mean) = 20 - 0.5 log(2 pi) - log(1 - tanh^2).
    lp = D.log_prob_pre_tanh(jnp.asarray([[0.5]]), jnp.asarray([[-20.0]]), jnp.asarray([[0.5]]))
    want = 20.0 - 0.5 * np.log(2 * np.pi) - np.log1p(-(np.tanh(0.5) ** 2))
    assert float(lp[0]) == pytest.approx(want, rel=1e-5)
