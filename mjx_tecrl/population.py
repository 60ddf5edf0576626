"""A run's members and how its state is laid out over devices: the pure functions of `loop.make_train` lifted to
the population (a leading member axis, of one member for a single run), placed and brought back to the host. The
host loop (`mjx_tecrl.run`), policy loading and `memory.check` ask this module, and nothing else, where a member's
arrays are."""

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


def lift(fn, n_members: int, in_axes=0):
    """`fn` over a leading member axis of `n_members` on the arguments whose `in_axes` is 0 and on every output.

    Several members: `jax.vmap`. One: the function itself on the member's arrays, the axis dropped and put back (a
    free reshape), because a vmap of one costs a single run about a third of its env steps/s on a CPU
    (`bench/population_of_one.py`: XLA gives batched matmuls and gathers no unbatched kernels) and changes its numbers.
    """
    if n_members > 1:
        return jax.vmap(fn, in_axes=in_axes)
    axes = in_axes if isinstance(in_axes, tuple) else None

    def one(*args):
        args = [a if axes is not None and axes[i] is None else jax.tree.map(lambda x: x[0], a) for i, a in
                enumerate(args)]  # fmt: skip
        return jax.tree.map(lambda x: x[None], fn(*args))

    return one


def abstract_state(fns, config: Config, members: list[dict[str, Any]]):
    """The shapes and dtypes of the members' training state (a leading member axis), with no values."""
    keys = jax.eval_shape(lambda: jax.random.split(jax.random.PRNGKey(0), len(members)))
    return jax.eval_shape(lift(fns._init, len(members)), keys, stacked_hyperparams(config, members))


def mesh_shape(n_members: int) -> tuple[int, int]:
    """The one placement rule, for a single run (one member) and a sweep alike: (member devices, env devices).

    Across processes the members spread over every device (`rundir` checks that they split evenly); in one
    process over gcd(members, devices) of them, so that each holds the same number, and the environments of a
    member over the devices left (`--num-envs` must divide by that). `memory.check` counts a device's share by it.
    """
    n = len(jax.devices())
    if jax.process_count() > 1:
        return n, 1
    members = math.gcd(n_members, n)
    return members, n // members


class Population:
    """The members of `plan` (one for a single run) and the pure functions of `loop.make_train` vmapped over a
    leading member axis, which every state, key and metric carries; laid out on a mesh of (members, envs)
    devices (`mesh_shape`): the member axis sharded over the first, each member's environments over the second.
    """

    def __init__(self, plan, fns, sharding, note: str = ""):
        self.plan, self.fns, self.sharding, self.note = plan, fns, sharding, note
        self.is_sweep = plan.is_sweep  # the directory layout (rundir) only: the computation is the same
        self.members = list(plan.members)
        self._eval_base = [jax.random.PRNGKey(m["seed"] + EVAL_SEED_OFFSET) for m in self.members]

    @classmethod
    def build(cls, plan, fns) -> Population:
        from jax.sharding import Mesh, NamedSharding
        from jax.sharding import PartitionSpec as P

        devices = jax.devices()
        n = len(plan.members)
        by_member, by_env = mesh_shape(n)
        note = ""
        if n > 1 and by_env > 1:
            note = (f"note: {n} members over {by_member} of {len(devices)} devices, each member's environments split "
                    f"over {by_env} (a multiple of {len(devices)} members gives each its own devices)")  # fmt: skip
        mesh = Mesh(np.array(devices[: by_member * by_env]).reshape(by_member, by_env), ("members", "envs"))
        return cls(plan, fns, (NamedSharding(mesh, P("members")), NamedSharding(mesh, P("members", "envs"))), note)

    def __len__(self) -> int:
        return len(self.members)

    # --- the lifted functions ---
    def chunk(self, ts, num_iters=None, warm=False):
        """`num_iters` (an int32 scalar, the same for every member; default all) of the chunk's iterations run,
        warm-up ones where `warm` (a bool scalar, the same for every member: it stays a branch, not a select)."""
        return lift(self.fns.run_chunk, len(self), (0, None, None))(ts, num_iters, warm)

    def warmup(self, ts):
        return lift(self.fns.warmup, len(self))(ts)

    def evaluate(self, learner, keys):
        return lift(self.fns.evaluate, len(self))(learner, keys)

    def eval_keys(self, evals_done: int):
        return self._put(np.stack([np.asarray(jax.random.fold_in(k, evals_done)) for k in self._eval_base]))

    def jit(self, fn, donate: bool = False):
        """`fn` jitted, its outputs laid out by member (where the environments are split too, as the inputs are)."""
        kw: dict[str, Any] = {"donate_argnums": 0} if donate else {}
        by_member, by_env = self.sharding
        if by_env.mesh.shape["envs"] == 1:
            kw["out_shardings"] = by_member
        return jax.jit(fn, **kw)

    # --- placement ---
    def init(self):
        """The members' initial states, each from its seed and hyperparameters."""
        keys = self._put(np.stack([np.asarray(jax.random.PRNGKey(m["seed"])) for m in self.members]))
        hp = self._put(stacked_hyperparams(self.plan.config, self.members))
        init = lift(self.fns._init, len(self))
        return jax.jit(init, out_shardings=self._state_shardings(jax.eval_shape(init, keys, hp)))(keys, hp)

    def _state_shardings(self, ts):
        by_member, by_env = self.sharding
        return jax.tree.map(lambda _: by_member, ts).replace(env=jax.tree.map(lambda _: by_env, ts.env))

    def place(self, ts):
        """Host or device arrays -> the program's layout (global arrays under several processes)."""
        return jax.tree.map(_from_host, ts, self._state_shardings(ts))

    def _put(self, tree):
        return jax.tree.map(lambda x: _from_host(x, self.sharding[0]), tree)

    # --- host side ---
    def to_host(self, tree):
        """Arrays to numpy on the host; across processes every process gets the whole (gathered) value."""
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            return multihost_utils.process_allgather(tree, tiled=True)
        return jax.device_get(tree)

    def member(self, tree, i: int):
        """Member `i`'s part of a host tree."""
        return jax.tree.map(lambda x: x[i], tree)

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
