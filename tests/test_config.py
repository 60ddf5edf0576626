"""Config defaults that depend on other flags."""

import pytest

from mjx_tecrl.config import EVAL_MIN_ITERS, Config, ConfigError, make_config, validate


def test_eval_every_default_scales_with_num_envs():
    assert make_config(num_envs=32).eval_every == Config().eval_every  # 5000 > 25 * 32
    big = make_config(env="humanoid", num_envs=4096)
    assert big.eval_every == EVAL_MIN_ITERS * 4096  # not an evaluation after every iteration
    assert big.eval_every // big.num_envs == EVAL_MIN_ITERS


def test_explicit_eval_every_is_kept():
    assert make_config(num_envs=4096, eval_every=4096).eval_every == 4096


def test_updates_per_iter_follows_the_replay_ratio_for_any_num_envs():
    """--updates-per-step is the first-class setting: more envs, more updates per iteration, same updates per
    env step; the count is rounded to whole blocks of --policy-delay."""
    for n in (1, 16, 32, 256):
        c = make_config(env="hopper", num_envs=n, updates_per_step=1.0, policy_delay=1)
        assert c.updates_per_iter == n
    assert make_config(env="hopper", num_envs=32, updates_per_step=0.25, policy_delay=2).updates_per_iter == 8
    assert make_config(env="hopper", num_envs=3, updates_per_step=1.0, policy_delay=2).updates_per_iter == 4  # 3 -> 4
    assert make_config(env="hopper", num_envs=1, updates_per_step=1.0, policy_delay=2).updates_per_iter == 2


def test_a_replay_ratio_below_one_block_per_iteration_is_refused():
    import pytest

    from mjx_tecrl.config import ConfigError, validate

    validate(make_config(env="hopper", num_envs=32, updates_per_step=1 / 32, policy_delay=2))  # 1 rounds up to 2
    with pytest.raises(ConfigError, match="--updates-per-step 0.01 at --num-envs 32"):
        validate(make_config(env="hopper", num_envs=32, updates_per_step=0.01, policy_delay=2))


def test_config_json_of_an_older_run_converts_updates_per_iter():
    old = {**Config().to_dict(), "num_envs": 32}
    del old["updates_per_step"]
    old["updates_per_iter"] = 8
    c = Config.from_dict(old)
    assert c.updates_per_step == 0.25 and c.updates_per_iter == 8


def test_n_step_must_be_positive_and_fit_in_the_buffer():
    validate(make_config(env="hopper", n_step=3))
    for bad, words in ((0, "--n-step 0 must be a positive integer"), (4, "--n-step 4 needs 4 inserts")):
        with pytest.raises(ConfigError, match=words):
            validate(
                make_config(env="hopper", n_step=bad, num_envs=32, buffer_size=96, learning_starts=64, batch_size=32)
            )


# --- the parallel preset (issue 18) -----------------------------------------------------------------------
def test_the_parallel_preset_is_the_default_from_1024_envs_and_an_explicit_preset_wins():
    from mjx_tecrl.envs.registry import PARALLEL_MIN_ENVS

    assert PARALLEL_MIN_ENVS == 1024
    assert make_config(env="halfcheetah", num_envs=1023).preset == "tuned"
    assert make_config(env="halfcheetah", num_envs=1024).preset == "parallel"
    assert make_config(env="humanoid", num_envs=4096, preset="tuned").preset == "tuned"
    assert make_config(env="humanoid", num_envs=4096, preset="tuned").batch_size == 256
    assert make_config(env="hopper", num_envs=256, preset="parallel").preset == "parallel"


@pytest.mark.parametrize("num_envs", [128, 256, 1024, 4096])
def test_the_parallel_preset_reuses_each_transition_about_16_times_at_any_scale(num_envs):
    """Batch 2 per env (256 to 8192) x 8 updates per iteration / num_envs envs = 16 for 128 to 4096 envs; replay
    of 1024 rows per env; learning starts once two batches are in the buffer; the task's other values stay."""
    c = make_config(env="humanoid", num_envs=num_envs, preset="parallel")
    validate(c)
    assert c.batch_size == min(max(2 * num_envs, 256), 8192)
    assert c.updates_per_iter == 8
    assert c.batch_size * c.updates_per_iter / num_envs == 16
    assert c.buffer_capacity == 1024 * num_envs
    assert c.learning_starts >= 2 * c.batch_size
    assert (c.n_step, c.normalize_obs, c.critic_layer_norm, c.tau, c.weight_decay) == (3, True, True, 0.1, 0.1)
    tuned = make_config(env="humanoid", preset="tuned")
    assert (c.actor_lr, c.budget_horizon, c.rho) == (tuned.actor_lr, tuned.budget_horizon, tuned.rho)


def test_flags_win_over_the_parallel_preset():
    c = make_config(env="halfcheetah", num_envs=4096, batch_size=1024, n_step=1, weight_decay=0.0)
    assert (c.preset, c.batch_size, c.n_step, c.weight_decay) == ("parallel", 1024, 1, 0.0)
    assert c.updates_per_iter == 8  # the rest of the preset still applies
