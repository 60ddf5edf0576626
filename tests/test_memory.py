"""Memory estimate before allocation: exact for the state it counts; too large is exit 2 naming the flag."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import jax
import pytest
from toy_envs import CounterEnv

from mjx_tecrl import memory
from mjx_tecrl.config import ConfigError
from mjx_tecrl.loop import make_train

TRAIN = str(Path(__file__).resolve().parents[1] / "train.py")
GIB = 2**30


def test_estimate_equals_the_bytes_of_the_state_init_allocates(tiny_config):
    config = tiny_config(buffer_size=1000, num_envs=8, num_eval_envs=5)
    env = CounterEnv()
    est = memory.estimate(config, env)
    ts = jax.eval_shape(make_train(config, env)._init, jax.random.PRNGKey(0), config.hyperparams())
    assert est.replay == memory.tree_bytes(ts.replay.data)
    assert est.replay == config.buffer_capacity * (2 * 2 + 1 + 3) * 4
    assert est.learner == memory.tree_bytes(ts.learner)
    assert est.env_per_instance * config.num_envs == memory.tree_bytes(ts.env)
    assert est.env == est.env_per_instance * (8 + 5)  # training and evaluation envs


def _check(config, **free):
    try:
        memory.check(config, CounterEnv(), **free)
    except ConfigError as e:
        return str(e)
    return None


@pytest.mark.parametrize("backend", ["cpu", "gpu"])
def test_a_buffer_too_large_names_buffer_size_and_a_size_that_fits(tiny_config, backend):
    config = tiny_config(buffer_size=10_000_000, num_envs=4, batch_size=8)
    est = memory.estimate(config, CounterEnv())
    free = dict(device_free=int(est.replay * 0.5), host_free=100 * est.replay, backend=backend)
    if backend == "cpu":
        free = dict(host_free=int(est.replay * 1.5), backend="cpu")  # the state and its checkpoint copy: 2
    msg = _check(config, **free)
    assert msg is not None and "\n" not in msg
    assert msg.startswith("--buffer-size 10000000: ")
    fit = int(re.search(r"--buffer-size (\d+) would fit", msg).group(1))
    assert 0 < fit < 10_000_000 and fit % config.num_envs == 0
    assert _check(tiny_config(buffer_size=fit, num_envs=4, batch_size=8), **free) is None  # the advice holds
    assert _check(tiny_config(buffer_size=2 * fit, num_envs=4, batch_size=8), **free) is not None
    assert _check(config, **{**free, "host_free": 100 * est.replay, "device_free": 10 * est.replay}) is None


def test_a_buffer_per_env_too_large_names_buffer_per_env_and_a_size_that_fits(tiny_config):
    """With --buffer-per-env the capacity is rows x envs, and the advice is in the flag the user gave."""
    config = tiny_config(buffer_per_env=2_500_000, num_envs=4, batch_size=8)
    assert config.buffer_capacity == 10_000_000
    est = memory.estimate(config, CounterEnv())
    free = dict(host_free=int(est.replay * 1.5), backend="cpu")
    msg = _check(config, **free)
    assert msg is not None and msg.startswith("--buffer-per-env 2500000: ")
    fit = int(re.search(r"--buffer-per-env (\d+) would fit", msg).group(1))
    assert 0 < fit < 2_500_000
    assert _check(tiny_config(buffer_per_env=fit, num_envs=4, batch_size=8), **free) is None  # the advice holds


def test_on_a_gpu_checkpoint_copies_count_against_host_ram(tiny_config):
    config = tiny_config(buffer_size=10_000_000, num_envs=4)
    est = memory.estimate(config, CounterEnv())
    free = dict(device_free=10 * est.replay, host_free=est.replay, backend="gpu")
    msg = _check(config, **free)
    assert msg is not None and "the host copy of the checkpointed state" in msg and "--no-checkpoint-buffer" in msg
    assert _check(tiny_config(buffer_size=10_000_000, num_envs=4, checkpoint_buffer=False), **free) is None


def test_too_many_envs_names_num_envs(tiny_config):
    config = tiny_config(buffer_size=64, num_envs=4_000_000, num_eval_envs=10)
    est = memory.estimate(config, CounterEnv())
    free = dict(host_free=int(est.env * 3 * 0.5 / memory.HEADROOM), backend="cpu")
    msg = _check(config, **free)
    assert msg is not None and msg.startswith("--num-envs 4000000: "), msg
    fit = int(re.search(r"--num-envs (\d+) would fit", msg).group(1))
    assert 0 < fit < 4_000_000
    assert _check(tiny_config(buffer_size=64, num_envs=fit, num_eval_envs=10), **free) is None
    assert _check(tiny_config(buffer_size=64, num_envs=2 * fit, num_eval_envs=10), **free) is not None


@pytest.mark.parametrize("backend", ["cpu", "gpu"])
def test_unknown_free_memory_is_not_an_error(tiny_config, monkeypatch, backend):
    monkeypatch.setattr(memory, "host_available_bytes", lambda: None)
    monkeypatch.setattr(memory, "device_free_bytes", lambda device=None: None)
    assert _check(tiny_config(buffer_size=10**12), backend=backend) is None


def test_free_memory_of_this_machine_is_read():
    host = memory.host_available_bytes()
    assert host is None or 0 < host < 2**50
    if jax.default_backend() == "cpu":
        assert memory.device_free_bytes() is None
        assert host is not None  # Linux CI: /proc/meminfo


def test_huge_sizes_through_the_cli_exit_2_before_anything_is_written(tmp_path):
    cases = {
        "buffer": (["--buffer-size", "100000000000"], "--buffer-size"),
        "envs": (["--num-envs", "100000000"], "--num-envs"),
    }
    procs = {}
    for name, (argv, _) in cases.items():  # side by side: each only imports, builds the env and estimates
        (tmp_path / name).mkdir()
        procs[name] = subprocess.Popen([sys.executable, TRAIN, *argv], cwd=tmp_path / name, text=True,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    for name, (argv, flag) in cases.items():
        out, err = procs[name].communicate(timeout=600)
        lines = err.splitlines()
        assert procs[name].returncode == 2, err
        assert len(lines) == 1 and "Traceback" not in err, err
        assert lines[0].startswith(f"train.py: error: {flag} {argv[1]}: ") and f"{flag} " in lines[0].split(";")[-1]
        assert out == ""
        assert os.listdir(tmp_path / name) == [], "a refused run wrote into the working directory"
