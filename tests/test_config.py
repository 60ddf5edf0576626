"""Config defaults that depend on other flags."""

from mjx_tecrl.config import EVAL_MIN_ITERS, Config, make_config


def test_eval_every_default_scales_with_num_envs():
    assert make_config(num_envs=32).eval_every == Config().eval_every  # 5000 > 25 * 32
    big = make_config(env="humanoid", num_envs=4096)
    assert big.eval_every == EVAL_MIN_ITERS * 4096  # not an evaluation after every iteration
    assert big.eval_every // big.num_envs == EVAL_MIN_ITERS


def test_explicit_eval_every_is_kept():
    assert make_config(num_envs=4096, eval_every=4096).eval_every == 4096
