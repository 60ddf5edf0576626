"""A run's members and how its state is laid out over devices: the pure functions of `loop.make_train` lifted to
the population (one member for a single run, a leading member axis for a sweep), placed and brought back to the
host. The host loop (`mjx_tecrl.run`) asks this module, and nothing else, where a member's arrays are."""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mjx_tecrl import health, rundir
from mjx_tecrl import sweep as sweep_lib
from mjx_tecrl.config import HYPERPARAM_NAMES, Config, Hyperparams

EVAL_SEED_OFFSET = 1_000_003  # evaluation keys: PRNGKey(seed + offset) folded with the evaluation count


def stacked_hyperparams(config: Config, members: list[dict[str, Any]]) -> Hyperparams:
    """The members' traced hyperparameters with a leading member axis (config values where not swept)."""
    rows = [rundir.member_hyperparams(config, m) for m in members]
    return Hyperparams(**{n: jnp.asarray([r[n] for r in rows], jnp.float32) for n in HYPERPARAM_NAMES})


def member_devices(n_members: int) -> int:
    """How many devices a population of `n_members` (> 1: a sweep) spreads its members over: all of them across
    processes, else gcd(members, devices), so that each holds the same number (`memory.check` asks this too)."""
    n = len(jax.devices())
    return n if jax.process_count() > 1 else math.gcd(n_members, n)


class Population:
    """The members of `plan` and the lifted functions.

    Single run: the functions as they are; with several local devices the environment axis is sharded.
    Sweep: every function vmapped over a leading member axis, which is sharded over the devices (of all
    processes under `jax.distributed`); `memory.check` counts a device's share by the same rule.
    """

    def __init__(self, plan, fns, sharding, note: str = ""):
        self.plan, self.fns, self.sharding, self.note = plan, fns, sharding, note
        self.is_sweep = plan.is_sweep
        self.members = list(plan.members) if plan.is_sweep else [{"member": 0, "seed": plan.config.seed}]
        self._eval_base = [jax.random.PRNGKey(m["seed"] + EVAL_SEED_OFFSET) for m in self.members]

    @classmethod
    def build(cls, plan, fns) -> Population:
        from jax.sharding import Mesh, NamedSharding
        from jax.sharding import PartitionSpec as P

        devices = jax.devices()
        if plan.is_sweep:
            n, d = len(plan.members), member_devices(len(plan.members))
            note = ""
            if d < len(devices):
                note = f"note: {n} members over {d} of {len(devices)} devices (use a multiple of {len(devices)})"
            mesh = Mesh(np.array(devices[:d]), ("members",))
            return cls(plan, fns, NamedSharding(mesh, P("members")), note)
        local = jax.local_devices()
        if len(local) > 1 and plan.config.num_envs % len(local) == 0:
            mesh = Mesh(np.array(local), ("envs",))
            return cls(plan, fns, (NamedSharding(mesh, P()), NamedSharding(mesh, P("envs"))))
        return cls(plan, fns, None)

    def __len__(self) -> int:
        return len(self.members)

    # --- the lifted functions ---
    def _lift(self, fn, in_axes=0):
        return jax.vmap(fn, in_axes=in_axes) if self.is_sweep else fn

    def chunk(self, ts, num_iters=None):
        """`num_iters` (an int32 scalar, the same for every member; default all) of the chunk's iterations run."""
        return self._lift(self.fns.run_chunk, (0, None))(ts, num_iters)

    def warmup(self, ts):
        return self._lift(self.fns.warmup)(ts)

    def evaluate(self, learner, keys):
        return self._lift(self.fns.evaluate)(learner, keys)

    def eval_keys(self, evals_done: int):
        keys = [jax.random.fold_in(k, evals_done) for k in self._eval_base]
        if not self.is_sweep:
            return keys[0]
        return self._put(np.stack([np.asarray(k) for k in keys]))

    def jit(self, fn, donate: bool = False):
        kw: dict[str, Any] = {"donate_argnums": 0} if donate else {}
        if self.is_sweep:
            kw["out_shardings"] = self.sharding
        return jax.jit(fn, **kw)

    # --- placement ---
    def init(self):
        fns, plan = self.fns, self.plan
        if not self.is_sweep:
            return self.place(fns.init(jax.random.PRNGKey(plan.config.seed)))
        keys = np.stack([np.asarray(jax.random.PRNGKey(m["seed"])) for m in self.members])
        hp = stacked_hyperparams(plan.config, self.members)
        return jax.jit(jax.vmap(fns._init), out_shardings=self.sharding)(self._put(keys), self._put(hp))

    def _state_shardings(self, ts):
        if self.is_sweep:
            return jax.tree.map(lambda _: self.sharding, ts)
        replicated, by_env = self.sharding
        return jax.tree.map(lambda _: replicated, ts).replace(env=jax.tree.map(lambda _: by_env, ts.env))

    def place(self, ts):
        """Host or device arrays -> the program's layout (global arrays under several processes)."""
        if self.sharding is None:
            return jax.tree.map(jnp.asarray, ts)
        return jax.tree.map(_from_host, ts, self._state_shardings(ts))

    def _put(self, tree):
        return jax.tree.map(lambda x: _from_host(x, self.sharding), tree) if self.is_sweep else tree

    # --- host side ---
    def to_host(self, tree):
        """Arrays to numpy on the host; across processes every process gets the whole (gathered) value."""
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            return multihost_utils.process_allgather(tree, tiled=True)
        return jax.device_get(tree)

    def member(self, tree, i: int):
        """Member `i`'s part of a host tree (the tree itself for a single run)."""
        return jax.tree.map(lambda x: x[i], tree) if self.is_sweep else tree

    def rows(self, metrics: dict[str, Any]) -> list[dict[str, float]]:
        """Per member, its scalars of a host metrics dict."""
        return [{k: float(v) for k, v in self.member(metrics, i).items()} for i in range(len(self))]

    def split_nonfinite(self, metrics) -> tuple[dict[str, Any], list[dict[str, int]]]:
        """The chunk's metrics without its non-finite report, and per member {quantity: first bad iteration}."""
        report = {k: np.asarray(v) for k, v in metrics.items() if k.startswith(health.NONFINITE_PREFIX)}
        rest = {k: v for k, v in metrics.items() if k not in report}
        return rest, [health.split_nonfinite(self.member(report, i))[1] for i in range(len(self))]

    def iteration(self, counter) -> int:
        """An int32 counter of the state (the same in every member) as a Python int."""
        return int(np.asarray(self.to_host(counter)).reshape(-1)[0])

    def metrics_dir(self, i: int) -> str:
        return rundir.metrics_dir(self.plan.run_dir, i if self.is_sweep else None)

    def seed(self, i: int) -> int:
        return int(self.members[i]["seed"])

    def hyperparams(self, i: int) -> dict[str, float]:
        """Member `i`'s traced hyperparameters (the config's, where its sweep does not set them)."""
        return rundir.member_hyperparams(self.plan.config, self.members[i])

    def label(self, i: int) -> str:
        names = self.plan.sweep.names if self.is_sweep else ()
        return f"{sweep_lib.member_label(self.members[i], names)} seed {self.seed(i)}"


def _from_host(x, sharding):
    return jax.make_array_from_callback(np.shape(x), sharding, lambda idx: np.asarray(x)[idx])
