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
