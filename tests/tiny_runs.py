"""Run directories for the tests of the commands that read one (robustness, evaluate): config.json and a checkpoint
of untrained tiny policies, written without training (nothing compiled)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from mjx_tecrl.envs import registry

from mjx_tecrl import checkpoint
from mjx_tecrl.config import make_config
from mjx_tecrl.loop import make_train


def tiny_run_dir(
    run_dir: Path, algo: str, seed: int, sweep_rhos: tuple[float, ...] = (), extra: tuple[str, ...] = ()
) -> None:
    """A run directory holding an untrained tiny policy (no training: the study only needs a checkpoint);
    with `sweep_rhos`, a sweep's directory: one member per rho, seeds seed, seed + 1, ...; `extra`: more
    checkpoint files besides latest.ckpt (best.ckpt, step-N.ckpt), each with other policies (seeds + 100 k)."""
    config = make_config(
        env="inverted_pendulum", algo=algo, seed=seed, hidden_sizes=(16, 16), num_envs=4, batch_size=8,
        buffer_size=64, learning_starts=8, total_steps=64, eval_every=8, num_eval_envs=3, episode_length=40,
        out=str(run_dir),
    )  # fmt: skip
    fns = make_train(config, registry.make(config.env))
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps(config.to_dict()))
    members = [(seed + i, dataclasses.replace(config, rho=rho)) for i, rho in enumerate(sweep_rhos)] or [(seed, config)]
    hp = config.hyperparams()
    for k, name in enumerate((checkpoint.LATEST, *extra)):
        _write(run_dir, fns, config, hp, [(s + 100 * k, c) for s, c in members], sweep_rhos, name)


def _write(run_dir, fns, config, hp, members, sweep_rhos, name) -> None:
    seed = members[0][0]
    learners = []
    for s, c in members:
        learners.append(fns.learner.init(jax.random.PRNGKey(s), fns.env.observation_size,
                                         c.hyperparams()))  # fmt: skip
    # The env and replay parts of the state stay zeros: a study never reads them. Every state has the member
    # axis (a single run: a population of one).
    template = jax.eval_shape(jax.vmap(fns._init), jax.random.split(jax.random.PRNGKey(seed), len(members)),
                              jax.tree.map(lambda x: jnp.stack([x] * len(members)), hp))  # fmt: skip
    learner = jax.tree.map(lambda *xs: np.stack(xs), *learners)
    if sweep_rhos:
        sweep = [{"member": i, "seed": s, "hyperparams": {"rho": c.rho}} for i, (s, c) in enumerate(members)]
        if name == checkpoint.LATEST:  # the members' seeds; the other checkpoints' policies differ from theirs
            (run_dir / "sweep.json").write_text(json.dumps({"members": sweep}))
    state = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), template).replace(learner=learner)
    checkpoint.save(str(run_dir / "checkpoints"), state, {"env_steps": 0, "has_buffer": True}, name)
