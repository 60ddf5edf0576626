"""Registry of tasks by name: `make(name, physics)` and the `--list-envs` table.

Bare names (`hopper`, `humanoid`, ...) are the Gymnasium MuJoCo v5 tasks running in MJX
(`mjx_tecrl.envs.gym_tasks`); `brax:<name>` is brax's MJX version of the task (swimmer: brax's generalized
backend). `physics` picks the solver settings of a Gymnasium task: `faithful` (the file's, closest to
MuJoCo C) or `fast` (one Newton iteration, as brax's MJX tasks); brax's tasks keep their own.

A user's own task: `register(name, factory)` from Python, or `--env package.module:factory` (imported when first
named); the env contract is `check_env`'s (docs/envs.md, "Your own task").
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mjx_tecrl.envs.gym_base import PHYSICS, mjx_module
from mjx_tecrl.envs.wrappers import ScaledActionEnv

from mjx_tecrl.config import ConfigError


class UnknownEnvError(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


class EnvFactoryError(ConfigError):
    """A user's task that cannot be used: its module does not import, or its factory's env breaks the contract."""


@dataclass(frozen=True)
class EnvSpec:
    """A task and its per-task defaults (`preset` overrides applied to Config; `paper` ones too)."""

    name: str
    source: str
    task: str  # the bare name: the key of gym_tasks.TASKS, or brax's environment name
    kind: str = "gymnasium"  # or "brax"
    backend: str = "mjx"  # brax's pipeline backend (brax tasks only)
    env_scales_actions: bool = False  # brax's step maps [-1, 1] to the ctrlrange itself
    gym_id: str = ""  # Gymnasium's id of the same task (MuJoCo C), where there is one: `evaluate --sim mujoco`
    factory: Callable[[], Any] | None = None  # kind "custom": the user's env factory (`register`)
    tuned: dict[str, Any] = field(default_factory=dict)
    paper: dict[str, Any] = field(default_factory=dict)

    def preset(self, name: str, num_envs: int) -> dict[str, Any]:
        """The values of preset `name` (`PRESETS`) for this task at `num_envs` environments."""
        if name == "paper":
            return dict(self.paper)
        if name == "parallel":
            return {**self.tuned, **parallel_recipe(num_envs, self.tuned)}
        return dict(self.tuned)

    def make(self, physics: str = "faithful") -> ScaledActionEnv:
        if physics not in PHYSICS:
            raise ValueError(f"physics {physics!r} is unknown; allowed: {', '.join(PHYSICS)}")
        if self.kind != "gymnasium" and physics != "faithful":
            raise ValueError(f"physics {physics!r} applies to the Gymnasium tasks only, not {self.name!r}")
        with _mjx_models_on_a_local_device():
            if self.kind == "custom":
                try:
                    env = self.factory()
                except Exception as e:
                    raise EnvFactoryError(f"--env {self.name!r}: the factory raised {type(e).__name__}: {e}") from e
                check_env(self.name, env)
                return ScaledActionEnv(env, env_scales_actions=self.env_scales_actions)
            if self.kind == "gymnasium":
                from mjx_tecrl.envs.gym_tasks import TASKS

                return ScaledActionEnv(TASKS[self.task][0](physics))
            return ScaledActionEnv(_make_brax(self.task, self.backend), env_scales_actions=self.env_scales_actions)

    def describe(self) -> dict[str, Any]:
        """Observation and action size, control timestep and frame skip, from the model file (no compiling)."""
        if self.kind != "gymnasium":
            return {"source": self.source}
        from mjx_tecrl.envs.gym_base import load_model
        from mjx_tecrl.envs.gym_tasks import TASKS

        cls, gym_id = TASKS[self.task]
        model = load_model(cls.xml_file, "faithful")
        return {
            "observation_size": cls.observation_dim,
            "action_size": int(model.nu),
            "dt": float(model.opt.timestep * cls.frame_skip),
            "frame_skip": cls.frame_skip,
            "source": self.source,
        }


def _make_brax(name: str, backend: str) -> Any:
    import contextlib
    import io
    import warnings

    # mujoco.mjx prints "Failed to import warp" at import on machines without NVIDIA Warp, which
    # MJX's JAX backend does not need; keep that line out of the user's output.
    with contextlib.redirect_stdout(io.StringIO()):
        from brax import envs as brax_envs

    _patch_brax_fluid_clip()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return brax_envs.get_environment(name, backend=backend)


@contextlib.contextmanager
def _mjx_models_on_a_local_device():
    """mjx.put_model without a device picks jax.devices()[0]; under jax.distributed that device belongs to
    process 0, and the other processes could not read their own env's model. Give it a local device."""
    import jax

    if jax.process_count() == 1:
        yield
        return
    from mjx_tecrl.envs.gym_base import mjx_module

    mjx = mjx_module()
    original = mjx.put_model
    mjx.put_model = functools.partial(original, device=jax.local_devices()[0])
    try:
        yield
    finally:
        mjx.put_model = original


def _patch_brax_fluid_clip() -> None:
    """brax 0.14's fluid model (swimmer, generalized backend) calls jnp.clip(x, a_min=...), which JAX 0.10
    removed (TypeError at the first reset). Give brax.fluid a jnp whose clip still takes a_min / a_max."""
    import types

    import jax.numpy as jnp
    from brax import fluid

    if getattr(fluid.jp, "_a_min_compat", False):
        return

    def clip(x, min=None, max=None, *, a_min=None, a_max=None):  # noqa: A002
        return jnp.clip(x, a_min if min is None else min, a_max if max is None else max)

    compat = types.SimpleNamespace(**{k: getattr(jnp, k) for k in dir(jnp) if not k.startswith("__")})
    compat.clip, compat._a_min_compat = clip, True
    fluid.jp = compat


PRESETS_FILE = os.path.join(os.path.dirname(__file__), "presets.yaml")  # the tasks' presets, their only source


def load_presets(path: str = PRESETS_FILE) -> dict[str, Any]:
    """presets.yaml: {"shared": {group: values}, "tasks": {task: {"tuned": values, "paper": values}}}, every
    value checked against its Config field's type (ConfigError naming the task and key)."""
    import dataclasses

    import yaml

    from mjx_tecrl.config import Config

    with open(path) as f:
        data = yaml.safe_load(f)
    types = {f.name: type(f.default) for f in dataclasses.fields(Config)}
    blocks = [(f"shared.{g}", v) for g, v in data["shared"].items()]
    blocks += [(f"tasks.{t}.{p}", v) for t, presets in data["tasks"].items() for p, v in presets.items()]
    for where, values in blocks:
        Config.fields_of(values)  # ConfigError naming a key that is not a Config field
        for key, value in values.items():
            want = types[key]
            if not (isinstance(value, want) or (want is float and type(value) is int)):
                raise ConfigError(f"{path}: {where}.{key} is {value!r} ({type(value).__name__}); a {want.__name__}")
    return data


_PRESETS = load_presets()
_LOCOMOTION = _PRESETS["shared"]["locomotion"]  # also a user's task's (`register`, Playground) tuned start
_TASKS = {
    "inverted_pendulum": dict(gym_id="InvertedPendulum-v5", brax_scales=True),
    "inverted_double_pendulum": dict(gym_id="InvertedDoublePendulum-v5"),
    "reacher": dict(gym_id="Reacher-v5", time_limit=50),
    "pusher": dict(gym_id="Pusher-v5", time_limit=100, brax_scales=True),
    "hopper": dict(gym_id="Hopper-v5"),
    "halfcheetah": dict(gym_id="HalfCheetah-v5"),
    "ant": dict(gym_id="Ant-v5"),
    "swimmer": dict(gym_id="Swimmer-v5", brax_backend="generalized"),
    "walker2d": dict(gym_id="Walker2d-v5"),
    "humanoid": dict(gym_id="Humanoid-v5", brax_scales=True),
    "humanoidstandup": dict(gym_id="HumanoidStandup-v5"),
}
if set(_PRESETS["tasks"]) != set(_TASKS):
    raise ConfigError(f"{PRESETS_FILE}: its tasks {sorted(_PRESETS['tasks'])} are not the registry's {sorted(_TASKS)}")

# The parallel preset: the task's tuned values, then the massively parallel off-policy learners' recipe: data
# reused through a few large-batch updates per iteration instead of one update per env step (docs/decisions.md,
# "Learning at scale", for the anchor of every value). It is the default from PARALLEL_MIN_ENVS envs.
PRESETS = ("tuned", "paper", "parallel")
PARALLEL_MIN_ENVS = 1024
PARALLEL_UPDATES_PER_ITER = 8  # FastSAC: 8 updates per env step of 4096 envs


def parallel_recipe(num_envs: int, tuned: dict[str, Any]) -> dict[str, Any]:
    """The parallel preset's values at `num_envs`: batch 2 per env in [256, 8192] (FastSAC: 8192 at 4096 envs), so
    8 updates per iteration reuse each transition about 16 times (FastSAC's replay ratio); 1024 replay rows per env
    (FastSAC 1k, PQL 1.2k); 3-step targets (PQL, FastTD3); observation normalisation (FastTD3, PQL); targets at
    tau 0.1 (FastTD3 0.1, FastSAC 0.125: few updates per env step); AdamW 0.1 (FastTD3)."""
    batch = min(max(2 * num_envs, 256), 8192)
    return {
        "batch_size": batch,
        "updates_per_step": PARALLEL_UPDATES_PER_ITER / num_envs,
        "buffer_per_env": 1024,
        "learning_starts": max(tuned.get("learning_starts", 10_000), 2 * batch),
        "n_step": 3,
        "normalize_obs": True,
        "critic_layer_norm": True,
        "tau": 0.1,
        "entropy_critic_tau": 0.1,
        "weight_decay": 0.1,
    }


_REGISTRY: dict[str, EnvSpec] = {}
for _name, _kw in _TASKS.items():
    _presets = {p: dict(_PRESETS["tasks"][_name].get(p) or {}) for p in ("tuned", "paper")}
    # Gymnasium's own time limit where it is not 1000 steps (Reacher 50, Pusher 100), as --episode-length.
    _limit = {"episode_length": _kw["time_limit"]} if "time_limit" in _kw else {}
    _REGISTRY[_name] = EnvSpec(
        name=_name,
        source=f"gymnasium {_kw['gym_id']} (MJX)",
        task=_name,
        gym_id=_kw["gym_id"],
        tuned={**_presets["tuned"], **_limit},
        paper={**_presets["paper"], **_limit},
    )
    _backend = _kw.get("brax_backend", "mjx")
    _REGISTRY[f"brax:{_name}"] = EnvSpec(
        name=f"brax:{_name}",
        source=f"brax ({_backend} backend)",
        task=_name,
        kind="brax",
        backend=_backend,
        env_scales_actions=_kw.get("brax_scales", False),
        **_presets,
    )


_BUILTIN = frozenset(_REGISTRY)
PREFIXES = ("brax", "playground")  # `prefix:<task>` names; any other `a.b:c` is a module path and a factory in it


def register(
    name: str,
    factory: Callable[[], Any],
    tuned: dict[str, Any] | None = None,
    paper: dict[str, Any] | None = None,
    *,
    env_scales_actions: bool = False,
    source: str = "",
) -> EnvSpec:
    """Make `factory() -> env` trainable as `--env name` in this process (train, sweeps, evaluate, render, and
    robustness where the env has an MJX model in `sys`). `tuned` / `paper`: the task's presets (Config field
    overrides); `tuned`, the default, starts from the locomotion tasks' values (one update per env step, lr
    3e-4, LayerNorm critics), `paper` from the spec's defaults. Actions in [-1, 1] are mapped to
    `env.sys.actuator_ctrlrange` where the env has one, unless `env_scales_actions` (the env maps them itself).
    Returns the spec; re-registering a name replaces it."""
    if not isinstance(name, str) or not name or name in _BUILTIN or name.split(":")[0] in PREFIXES:
        raise ValueError(f"register: name {name!r} is empty or taken by a built-in task")
    if not callable(factory):
        raise TypeError(f"register: factory {factory!r} is not callable")
    from mjx_tecrl.config import Config

    for preset in (tuned or {}, paper or {}):
        Config.fields_of(preset)  # ConfigError naming a key that is not a Config field
    where = f"{getattr(factory, '__module__', '?')}:{getattr(factory, '__qualname__', repr(factory))}"
    _REGISTRY[name] = EnvSpec(name=name, source=source or f"user ({where})", task=name, kind="custom",
                              env_scales_actions=env_scales_actions, factory=factory,
                              tuned={**_LOCOMOTION, **(tuned or {})}, paper=dict(paper or {}))  # fmt: skip
    return _REGISTRY[name]


def check_env(name: str, env: Any) -> None:
    """The env contract (brax's): `reset(key) -> state`, `step(state, action) -> state` on one env, with
    `state.obs` [observation_size], `state.reward` and `state.done` (1.0 on a termination) scalars; an integer
    `action_size` and a float `dt` (seconds per step). EnvFactoryError (one line) naming what is missing."""
    missing = [a for a in ("reset", "step") if not callable(getattr(env, a, None))]
    missing += [a for a in ("action_size", "dt") if not hasattr(env, a)]
    if missing:
        raise EnvFactoryError(
            f"--env {name!r}: the factory returned a {type(env).__name__} without {', '.join(missing)}; an env needs "
            "reset(key), step(state, action), action_size and dt (docs/envs.md, 'Your own task')"
        )
    import jax

    try:
        state = jax.eval_shape(env.reset, jax.random.PRNGKey(0))
        fields = {f: getattr(state, f, None) for f in ("obs", "reward", "done")}
    except Exception as e:
        raise EnvFactoryError(f"--env {name!r}: reset(key) failed ({type(e).__name__}: {e})") from e
    bad = [f for f, v in fields.items() if v is None or len(v.shape) != (1 if f == "obs" else 0)]
    if bad:
        raise EnvFactoryError(
            f"--env {name!r}: reset(key) must return one env's state with obs [n] and scalar reward and done; "
            f"got {', '.join(f + ' ' + str(getattr(fields[f], 'shape', None)) for f in bad)}"
        )


def _import_factory(name: str) -> EnvSpec:
    """`package.module:factory` -> its spec, registered under that name; EnvFactoryError when it does not import."""
    module_name, _, attr = name.partition(":")
    if os.getcwd() not in sys.path:  # importable from the working directory, as under `python -m`
        sys.path.append(os.getcwd())
    mjx_module()  # imported quietly first: MJX prints 'Failed to import warp' when the user's module imports it
    try:
        module = importlib.import_module(module_name)
    except Exception as e:  # ImportError, or the module's own error
        raise EnvFactoryError(
            f"--env {name!r}: module {module_name!r} does not import ({type(e).__name__}: {e})"
        ) from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise EnvFactoryError(f"--env {name!r}: module {module_name!r} has no callable {attr!r}")
    if name not in _REGISTRY:  # the module may register its task's presets under this name itself
        register(name, factory, source=f"user ({name})")
    return _REGISTRY[name]


def _playground_spec(name: str, task: str) -> EnvSpec:
    """`playground:<Name>`: MuJoCo Playground's task through `envs/playground.py`, registered when first named."""
    from mjx_tecrl.envs import playground

    try:
        known = playground._registry().ALL_ENVS
    except ImportError as e:
        raise EnvFactoryError(f"--env {name!r}: {e}") from None
    if task not in known:
        raise EnvFactoryError(f"--env {name!r}: Playground has no task {task!r}; it has {', '.join(known)}")
    tuned = {**_LOCOMOTION, "episode_length": playground.episode_length(task)}
    _REGISTRY[name] = EnvSpec(name=name, source="MuJoCo Playground (MJX)", task=task, kind="custom",
                              env_scales_actions=True, factory=functools.partial(playground.make, task),
                              tuned=tuned, paper={"episode_length": tuned["episode_length"]})  # fmt: skip
    return _REGISTRY[name]


def list_envs() -> tuple[str, ...]:
    """Every registered name, aliases included."""
    return tuple(_REGISTRY)


def bare_names() -> tuple[str, ...]:
    """The Gymnasium tasks."""
    return tuple(n for n in _REGISTRY if n in _BUILTIN and ":" not in n)


def user_names() -> tuple[str, ...]:
    """The tasks registered in this process (`register`, or `--env module:factory` / `playground:<Name>` once
    named)."""
    return tuple(n for n in _REGISTRY if n not in _BUILTIN)


def spec(name: str) -> EnvSpec:
    """The spec of a task; `package.module:factory` is imported; an unknown name raises UnknownEnvError."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    module, sep, attr = name.partition(":")
    if sep and module == "playground":
        return _playground_spec(name, attr)
    if sep and module and attr and module not in PREFIXES:
        return _import_factory(name)
    raise UnknownEnvError(
        f"unknown env {name!r}; known: {', '.join(bare_names())} (prefix brax: for brax's version), "
        "or your own as package.module:factory"
    )


def make(name: str, physics: str = "faithful") -> ScaledActionEnv:
    """The task `name` with actions in [-1, 1]; `physics` (`faithful` or `fast`) for the Gymnasium tasks."""
    return spec(name).make(physics)
