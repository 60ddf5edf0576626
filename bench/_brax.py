"""Brax's own SAC trainer (`brax.training.agents.sac.train`) at the settings of one of our configs.

brax 0.14's trainer calls `jax.device_put_replicated`, which JAX 0.10 removed. `install_shim()` puts back
an equivalent for the bench scripts only (never the library): each leaf stacked `len(devices)` times
along a new leading axis and sharded over `devices` along it, which is what the pmapped trainer expects.
Nothing else in the trainer needed changing under JAX 0.10.2 (its `jax.pmap` calls still run).

Settings matched to our config: task (the same brax env object our registry wraps), num_envs,
batch_size, grad_updates_per_step = updates_per_iter, hidden layer sizes and activation (GELU, exact, as
ours), replay capacity, min_replay_size = learning_starts (uniform random warm-up in ours, the initial
policy in brax's), discount, Polyak rate, learning rate (brax has one for actor and critic: our actor_lr;
ours are equal in every preset), reward scale, episode length, no observation normalisation.
Not matched (brax's trainer fixes them): the actor and temperature update every gradient step (ours: every
`policy_delay`-th; our `sac` with policy_delay 1 does the same work), the temperature's learning rate
3e-4 and initial log alpha 0, the entropy target -|A|/2 (ours -|A|), and evaluation that always runs
`episode_length` steps (ours stops once every episode has ended).
"""

from __future__ import annotations

import contextlib
import functools
import io

import jax
import jax.numpy as jnp
import numpy as np


def install_shim() -> None:
    if hasattr(jax, "device_put_replicated"):
        return

    def device_put_replicated(x, devices):
        from jax.sharding import Mesh, NamedSharding, PartitionSpec

        sharding = NamedSharding(Mesh(np.array(devices), ("d",)), PartitionSpec("d"))
        return jax.tree.map(lambda a: jax.device_put(jnp.stack([jnp.asarray(a)] * len(devices)), sharding), x)

    jax.device_put_replicated = device_put_replicated


def brax_env(task: str):
    """The brax env our registry wraps for `task` (same object, same backend)."""
    import _common as C

    return C.env(task).unwrapped


def train_kwargs(config, num_timesteps: int, num_evals: int, num_eval_envs: int) -> dict:
    """Keyword arguments of brax's sac.train at `config`'s settings (see the module docstring)."""
    import flax.linen as nn
    from brax.training.agents.sac import networks as sac_networks

    factory = functools.partial(
        sac_networks.make_sac_networks,
        hidden_layer_sizes=tuple(config.hidden_sizes),
        activation=functools.partial(nn.gelu, approximate=False),
    )
    return dict(
        num_timesteps=num_timesteps,
        episode_length=config.episode_length,
        num_envs=config.num_envs,
        num_eval_envs=num_eval_envs,
        learning_rate=config.actor_lr,
        discounting=config.gamma,
        seed=config.seed,
        batch_size=config.batch_size,
        num_evals=num_evals,
        normalize_observations=config.normalize_obs,
        reward_scaling=config.reward_scale,
        tau=config.tau,
        min_replay_size=config.learning_starts,
        max_replay_size=config.buffer_capacity,
        grad_updates_per_step=config.updates_per_iter,
        deterministic_eval=True,
        network_factory=factory,
    )


def train(config, progress_fn, num_timesteps: int, num_evals: int, num_eval_envs: int):
    """Run brax's SAC on `config.env`; `progress_fn(step, metrics)` is called after every evaluation."""
    install_shim()
    with contextlib.redirect_stdout(io.StringIO()):
        from brax.training.agents.sac import train as sac_train

    kwargs = train_kwargs(config, num_timesteps, num_evals, num_eval_envs)
    return sac_train.train(brax_env(config.env), progress_fn=progress_fn, **kwargs)
