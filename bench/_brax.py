"""Brax's own SAC trainer (`brax.training.agents.sac.train`) at the settings of one of our configs.

brax 0.14's trainer calls `jax.device_put_replicated`, which JAX 0.10 removed. `install_shim()` puts back
an equivalent for the bench scripts only (never the library): each leaf stacked `len(devices)` times
along a new leading axis and sharded over `devices` along it, which is what the pmapped trainer expects.
Under JAX 0.10.2 its `jax.pmap` calls still run, with one cost the shim also removes: the policy parameters
brax's loop hands its evaluator (`_unpmap` of the pmapped state) carry a fresh pmap-mesh sharding after each
epoch, so brax's jitted evaluation unroll compiled again at every evaluation (about 15 s each for the
pendulum on the CPU, measured with JAX_LOG_COMPILES). The shim puts those parameters on one device first,
so the evaluation compiles once, as brax meant; nothing it computes changes.

`capture_epoch()` lets a script time brax's own compiled training epoch the way ours are timed: while
active it wraps `jax.pmap` so that the pmapped `training_epoch` brax's `train` builds, and the state it
last returned, are kept; calling it again on that state runs exactly the program brax's loop runs.

Settings matched to our config: task (the same brax env object our registry wraps), num_envs,
batch_size, grad_updates_per_step = updates_per_iter, hidden layer sizes and activation (GELU, exact, as
ours), replay capacity, min_replay_size = learning_starts (uniform random warm-up in ours, the initial
policy in brax's), discount, Polyak rate, learning rate (brax has one for actor and critic: our actor_lr;
ours are equal in every preset), reward scale, episode length, no observation normalisation.
Not matched (brax's trainer fixes them): the actor and temperature update every gradient step (ours: every
`policy_delay`-th; our `sac` with policy_delay 1 does the same work); the temperature's learning rate
3e-4 and initial log alpha 0 (ours: the config's, equal in the tuned presets of inverted_pendulum,
hopper, ant and humanoid); the entropy target -|A|/2 (ours -|A|); brax's auto-reset restores each env's
first state (ours resets with a fresh key, only on iterations where some episode ended); and brax's
evaluation always runs `episode_length` steps (ours stops once every episode has ended).
"""

from __future__ import annotations

import contextlib
import functools
import io

import jax
import jax.numpy as jnp
import numpy as np

with contextlib.redirect_stdout(io.StringIO()):  # mujoco.mjx's "Failed to import warp" line
    from brax import envs as brax_envs


def device_put_replicated(x, devices):
    """What JAX's removed function did: every leaf stacked len(devices) times, sharded over `devices`."""
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    sharding = NamedSharding(Mesh(np.array(devices), ("d",)), PartitionSpec("d"))
    return jax.tree.map(lambda a: jax.device_put(jnp.stack([jnp.asarray(a)] * len(devices)), sharding), x)


def install_shim() -> None:
    if not hasattr(jax, "device_put_replicated"):
        jax.device_put_replicated = device_put_replicated
    from brax.training import acting

    if not getattr(acting.Evaluator.run_evaluation, "_on_one_device", False):
        acting.Evaluator.run_evaluation = _on_one_device(acting.Evaluator.run_evaluation)


def _on_one_device(run_evaluation):
    """`Evaluator.run_evaluation` with its policy parameters first put on one device (one sharding for
    every call, so its jitted unroll is not compiled again for each new pmap mesh; see the docstring)."""

    @functools.wraps(run_evaluation)
    def wrapped(self, policy_params, *args, **kwargs):
        device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        return run_evaluation(self, jax.device_put(policy_params, device), *args, **kwargs)

    wrapped._on_one_device = True
    return wrapped


class EpochCapture:
    """The pmapped `training_epoch` of brax's SAC and its latest (training state, env state, buffer state, key)."""

    def __init__(self):
        self.fn = None
        self.args = None

    def step(self) -> float:
        """One epoch on the captured state (donated, as brax does), blocked on every output; returns seconds."""
        import time

        t0 = time.perf_counter()
        out = self.fn(*self.args)
        jax.block_until_ready(out)
        dt = time.perf_counter() - t0
        self.args = (*out[:3], self.args[3])
        return dt


@contextlib.contextmanager
def capture_epoch():
    capture = EpochCapture()
    original = jax.pmap

    def pmap(fun, *args, **kwargs):
        mapped = original(fun, *args, **kwargs)
        if getattr(fun, "__name__", "") != "training_epoch":
            return mapped

        def call(*call_args):
            out = mapped(*call_args)
            capture.fn, capture.args = mapped, (*out[:3], call_args[3])
            return out

        return call

    jax.pmap = pmap
    try:
        yield capture
    finally:
        jax.pmap = original


def brax_env(task: str):
    """The env brax's trainer gets for `task`: for a `brax:` task the very object our registry wraps; for a
    Gymnasium task (not a brax `Env`) our registry env itself, its [-1, 1] action mapping included, behind
    `BraxEnvAdapter`. Either way both trainers step the same physics with the same action mapping."""
    import _common as C

    ours = C.env(task)
    if isinstance(ours.unwrapped, brax_envs.Env):
        return ours.unwrapped
    return BraxEnvAdapter(ours)


class BraxEnvAdapter(brax_envs.Env):
    """A brax `Env` over one of our registry envs (reset/step act on one env and return brax `State` fields)."""

    def __init__(self, ours):
        self._ours = ours

    def reset(self, rng):
        return self._ours.reset(rng)

    def step(self, state, action):
        # brax's wrappers add their own keys to `metrics` (EvalWrapper: "reward") and expect them to stay, as
        # brax's envs update the dict in place; ours return a fresh dict of the task's own terms.
        out = self._ours.step(state, action)
        return out.replace(metrics={**state.metrics, **out.metrics})

    @property
    def observation_size(self):
        return self._ours.observation_size

    @property
    def action_size(self):
        return self._ours.action_size

    @property
    def backend(self):
        return "mjx"

    @property
    def dt(self):
        return self._ours.dt


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
