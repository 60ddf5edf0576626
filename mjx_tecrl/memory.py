"""Memory estimate before anything is allocated: the state a configuration needs against the free memory.

The state is the replay buffer (capacity x (2 obs + action + 3) float32), the environments (an abstract
reset's bytes times `num_envs`, plus `num_eval_envs` for evaluation) and the learner (parameters, targets,
Adam moments, temperature, normaliser). Two pools are checked where the backend reports them:

- the device: the state itself (on a GPU, `memory_stats()`'s bytes_limit - bytes_in_use);
- host RAM (`MemAvailable` in /proc/meminfo): a checkpoint save holds one host copy of the saved state while
  its background write streams it to disk (`bench/checkpoint_cost.py`: peak 1.0 x the state on a CPU, where
  the state itself is in host RAM too; before the streamed writes, 2.0); the replay buffer counts only when
  it is checkpointed.

The activations of one update and other temporaries are not estimated; `HEADROOM` leaves room for them.
Too large is a `ConfigError` naming the flag to lower and the value that would fit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax

from mjx_tecrl.config import Config, ConfigError

HEADROOM = 0.85  # use at most this fraction of the free memory for the estimated state
BYTES_PER_FLOAT = 4


@dataclass(frozen=True)
class Estimate:
    """Bytes of each part of the training state."""

    replay_row: int  # one transition
    replay: int
    env_per_instance: int
    env: int  # training and evaluation envs
    learner: int

    @property
    def total(self) -> int:
        return self.replay + self.env + self.learner


def tree_bytes(tree) -> int:
    return sum(math.prod(x.shape) * x.dtype.itemsize for x in jax.tree.leaves(tree))


def estimate(config: Config, env) -> Estimate:
    """Bytes of the state `config` allocates on `env`, from abstract shapes only (nothing is allocated)."""
    from mjx_tecrl.learner import Learner

    obs, act = env.observation_size, env.action_size
    row = (2 * obs + act + 3) * BYTES_PER_FLOAT  # obs, next_obs, action, reward, terminated, truncated
    one_env = tree_bytes(jax.eval_shape(env.reset, jax.ShapeDtypeStruct((2,), jax.numpy.uint32)))
    one_env += 8  # the rollout's episode step and return (rollout.EnvState)
    learner = Learner.from_config(config, act)
    learner_state = jax.eval_shape(
        lambda k: learner.init(k, obs, config.hyperparams()), jax.ShapeDtypeStruct((2,), jax.numpy.uint32)
    )
    return Estimate(
        replay_row=row,
        replay=config.buffer_capacity * row,
        env_per_instance=one_env,
        env=one_env * (config.num_envs + config.num_eval_envs),
        learner=tree_bytes(learner_state),
    )


def _memory_stats(device=None) -> dict | None:
    """The device allocator's statistics (GPU/TPU), or None where the backend keeps none."""
    device = device or jax.local_devices()[0]
    try:
        return device.memory_stats() or None
    except Exception:  # backends without memory statistics
        return None


def device_free_bytes(device=None) -> int | None:
    """Free bytes of the device's memory where the backend reports them (GPU), else None."""
    stats = _memory_stats(device)
    if not stats or "bytes_limit" not in stats:
        return None
    return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))


def device_peak_bytes(device=None) -> int | None:
    """The device allocator's peak bytes in use so far (GPU/TPU); None where the backend keeps no statistics."""
    stats = _memory_stats(device)
    return int(stats["peak_bytes_in_use"]) if stats and "peak_bytes_in_use" in stats else None


def host_available_bytes() -> int | None:
    """MemAvailable from /proc/meminfo (Linux), else None."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def check(
    config: Config,
    env,
    device_free: int | None = None,
    host_free: int | None = None,
    backend: str = "",
    members: int = 1,
) -> None:
    """Raise ConfigError (one line) if the estimated state does not fit; free sizes default to the measured ones.

    `members`: a sweep's member count; the host-side copies hold every member, a device its share of them
    (`population.mesh_shape`)."""
    backend = backend or jax.default_backend()
    est = estimate(config, env)
    on_host = backend == "cpu"
    if device_free is None and not on_host:
        device_free = device_free_bytes()
    if host_free is None:
        host_free = host_available_bytes()
    copies = 1  # the host snapshot a checkpoint write holds (one write in flight at a time)
    saved_replay = copies if config.checkpoint_buffer else 0

    # (pool, free bytes, factor on env + learner bytes, factor on replay bytes)
    k = members
    from mjx_tecrl.population import mesh_shape

    on_device = -(-members // mesh_shape(members)[0])
    pools = []
    if on_host:
        pools.append(("available system RAM", host_free, k * (1 + copies), k * (1 + saved_replay)))
    else:
        pools.append((f"free {backend} memory", device_free, on_device, on_device))
        pools.append(("available system RAM for checkpoint copies", host_free, k * copies, k * saved_replay))
    for pool, free, f_state, f_replay in pools:
        if free is None:
            continue
        budget = HEADROOM * free
        need = f_state * (est.env + est.learner) + f_replay * est.replay
        if need <= budget:
            continue
        parts = f"replay buffer {_gib(est.replay)}, environments {_gib(est.env)}, networks {_gib(est.learner)}"
        if members > 1:
            parts += f", each times {members} sweep members"
        if pool.endswith("checkpoint copies"):
            what = "the host copy of the checkpointed state needs"
        elif on_host:
            what = "the training state and its checkpoint copy need"
        else:
            what = "the training state needs"
        head = f"{what} about {_gib(need)} of {pool} ({parts}) but {_gib(free)} is free"
        if f_replay:
            rows = int((budget - f_state * (est.env + est.learner)) // (f_replay * est.replay_row))
            rows = rows // config.num_envs * config.num_envs
            if rows >= max(config.batch_size, config.learning_starts, 1):
                also = " or --no-checkpoint-buffer" if pool.endswith("checkpoint copies") else ""
                raise ConfigError(f"{config.buffer_flag()}: {head}; {config.buffer_flag(rows)} would fit{also}")
        envs = _envs_that_fit(config, est, budget, f_state, f_replay)
        if 1 <= envs < config.num_envs:
            raise ConfigError(f"--num-envs {config.num_envs}: {head}; --num-envs {envs} would fit")
        flag = config.buffer_flag()
        raise ConfigError(
            f"{flag} with --num-envs {config.num_envs}: {head}; lower {flag.split()[0]}, --num-envs or --hidden-sizes"
        )


def _envs_that_fit(config: Config, est: Estimate, budget: float, f_state: int, f_replay: int) -> int:
    """The largest num_envs whose state fits `budget` (the buffer's capacity rounds up to a multiple of it)."""

    def need(n: int) -> float:
        capacity = config.capacity_at(n)
        env = est.env_per_instance * (n + config.num_eval_envs)
        return f_state * (env + est.learner) + f_replay * est.replay_row * capacity

    lo, hi = 0, config.num_envs  # need(lo) fits (or lo is 0), need(hi) does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if need(mid) <= budget else (lo, mid)
    return lo
