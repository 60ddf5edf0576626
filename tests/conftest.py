"""Shared helpers: tiny configs for the fused loop on the toy envs."""

from __future__ import annotations

import dataclasses
import os

import jax
import pytest

from mjx_tecrl.config import Config

TINY = dict(
    env="inverted_pendulum",  # only a label: the tests hand a toy env to make_train
    num_envs=4,
    total_steps=64,
    learning_starts=8,  # warmup_iters = 2
    updates_per_step=0.5,  # 2 updates per iteration of 4 envs
    batch_size=8,
    buffer_size=64,
    hidden_sizes=(16, 16),
    policy_delay=2,
    episode_length=5,
    eval_every=8,  # chunk_iters = 2
    num_eval_envs=3,
)


def _tiny_config(**overrides) -> Config:
    return dataclasses.replace(Config(**TINY), **overrides)


@pytest.fixture(scope="session")
def tiny_config():
    """A factory: tiny_config(**overrides) -> Config with small sizes for the 2-core CPU."""
    return _tiny_config


@pytest.fixture(scope="module")
def fast_compile():
    """XLA with most optimisations off for this module: the tests here check what programs compute, and
    on the 2-core CPU compiling them dominates the run time. Restored afterwards for other modules."""
    old = jax.config.values["jax_disable_most_optimizations"]
    jax.config.update("jax_disable_most_optimizations", True)
    yield
    jax.config.update("jax_disable_most_optimizations", old)


@pytest.fixture(scope="session")
def xla_cache_env(tmp_path_factory):
    """Environment for `python train.py` subprocesses sharing one persistent XLA compilation cache per test
    session: runs with the same program shapes (tests/test_run.py's TINY flags) compile once between them."""
    cache = tmp_path_factory.mktemp("xla_cache")
    return {
        **os.environ,
        "JAX_COMPILATION_CACHE_DIR": str(cache),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0.5",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
    }


@pytest.fixture(scope="session", autouse=True)
def _subprocess_compile_cache(tmp_path_factory):
    """`train.py` turns JAX's persistent cache on by default in ~/.cache; the tests' subprocesses use a session
    directory instead (this process's JAX read its environment at import, so nothing here changes)."""
    if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
        os.environ["JAX_COMPILATION_CACHE_DIR"] = str(tmp_path_factory.mktemp("subprocess_xla_cache"))
