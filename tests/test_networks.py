"""Networks: the LayerNorm options (`--critic-layer-norm`, `--actor-layer-norm`) and bfloat16 matmuls."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mjx_tecrl.config import Config
from mjx_tecrl.learner import Learner
from mjx_tecrl.networks import make_networks

OBS_DIM, ACT_DIM, HIDDEN = 5, 2, (16, 16, 16)


def _layer_norms(params) -> list[str]:
    return sorted(k for k in params["params"]["MLP_0"] if k.startswith("LayerNorm"))


@pytest.mark.parametrize("on", [False, True])
def test_critic_layer_norm_goes_into_every_hidden_layer_of_the_critics_only(on):
    nets = make_networks(ACT_DIM, HIDDEN, twin_entropy_critic=False, critic_layer_norm=on)
    actor, reward, entropy = nets.init(jax.random.PRNGKey(0), OBS_DIM)
    expected = [f"LayerNorm_{i}" for i in range(len(HIDDEN))] if on else []
    assert _layer_norms(reward) == expected
    assert _layer_norms(entropy) == expected
    assert _layer_norms(actor) == []
    if on:  # scale and bias per twin, one per hidden width
        assert reward["params"]["MLP_0"]["LayerNorm_0"]["scale"].shape == (2, HIDDEN[0])


@pytest.mark.parametrize("on", [False, True])
def test_critic_layer_norm_makes_the_critic_blind_to_the_scale_of_its_hidden_layers(on):
    """LayerNorm after a Dense: scaling that Dense's kernel and bias by c leaves the output as it was."""
    nets = make_networks(ACT_DIM, HIDDEN, twin_entropy_critic=False, critic_layer_norm=on)
    _, reward, _ = nets.init(jax.random.PRNGKey(1), OBS_DIM)
    obs = jax.random.normal(jax.random.PRNGKey(2), (32, OBS_DIM))
    act = jax.random.uniform(jax.random.PRNGKey(3), (32, ACT_DIM), minval=-1.0, maxval=1.0)
    scaled = jax.tree_util.tree_map_with_path(
        lambda path, x: x * 7.0 if "Dense_1" in jax.tree_util.keystr(path) else x, reward
    )
    q, std = nets.reward_critics(reward, obs, act)
    q_scaled, std_scaled = nets.reward_critics(scaled, obs, act)
    same = np.allclose(q, q_scaled, rtol=1e-4, atol=1e-5) and np.allclose(std, std_scaled, rtol=1e-4, atol=1e-5)
    assert same == on


def test_critic_layer_norm_flag_reaches_the_learner():
    for on in (False, True):
        learner = Learner.from_config(Config(critic_layer_norm=on), ACT_DIM)
        assert learner.networks.reward_critic.layer_norm is on
        assert learner.networks.entropy_critic.layer_norm is on
        _, reward, _ = learner.networks.init(jax.random.PRNGKey(0), OBS_DIM)
        assert bool(_layer_norms(reward)) is on
        assert jnp.all(
            jnp.isfinite(learner.networks.reward_critics(reward, jnp.zeros((1, OBS_DIM)), jnp.zeros((1, ACT_DIM)))[0])
        )


@pytest.mark.parametrize("on", [False, True])
def test_actor_layer_norm_goes_into_every_hidden_layer_of_the_actor_only(on):
    nets = make_networks(ACT_DIM, HIDDEN, twin_entropy_critic=False, actor_layer_norm=on)
    actor, reward, entropy = nets.init(jax.random.PRNGKey(0), OBS_DIM)
    assert _layer_norms(actor) == ([f"LayerNorm_{i}" for i in range(len(HIDDEN))] if on else [])
    assert _layer_norms(reward) == [] and _layer_norms(entropy) == []
    assert Learner.from_config(Config(actor_layer_norm=on), ACT_DIM).networks.actor.layer_norm is on


def test_bfloat16_matmuls_keep_float32_parameters_and_outputs_and_stay_close_to_float32():
    """--matmul-dtype bfloat16: the same parameters (float32), computed in bfloat16 (8 bits of mantissa), give
    float32 outputs within bfloat16's rounding of the float32 networks' (and not bit-identical to them)."""
    f32 = make_networks(ACT_DIM, HIDDEN, twin_entropy_critic=False, critic_layer_norm=True)
    bf16 = make_networks(ACT_DIM, HIDDEN, twin_entropy_critic=False, critic_layer_norm=True, matmul_dtype="bfloat16")
    actor, reward, entropy = bf16.init(jax.random.PRNGKey(0), OBS_DIM)
    assert {x.dtype for x in jax.tree.leaves((actor, reward, entropy))} == {jnp.dtype(jnp.float32)}
    obs = jax.random.normal(jax.random.PRNGKey(2), (64, OBS_DIM))
    act = jax.random.uniform(jax.random.PRNGKey(3), (64, ACT_DIM), minval=-1.0, maxval=1.0)
    for out32, out16 in [
        (f32.actor.apply(actor, obs), bf16.actor.apply(actor, obs)),
        (f32.reward_critics(reward, obs, act), bf16.reward_critics(reward, obs, act)),
        (f32.entropy_critics(entropy, obs, act), bf16.entropy_critics(entropy, obs, act)),
    ]:
        for a, b in zip(jax.tree.leaves(out32), jax.tree.leaves(out16), strict=True):
            assert b.dtype == jnp.float32
            scale = float(jnp.max(jnp.abs(a))) + 1e-3
            assert float(jnp.max(jnp.abs(a - b))) < 0.05 * scale
    q32, q16 = f32.reward_critics(reward, obs, act)[0], bf16.reward_critics(reward, obs, act)[0]
    assert not np.array_equal(q32, q16)  # the option does reach the matmuls
    assert Learner.from_config(Config(matmul_dtype="bfloat16"), ACT_DIM).networks.actor.dtype == jnp.bfloat16
