"""Policy-only files and a numpy policy: use a trained policy without JAX, MJX or the checkpoint's replay buffer.

`policy.npz` (written at the end of every run, and by `python -m mjx_tecrl.export RUN_DIR`) holds the actor's
weights, the observation normaliser, the action scale and offset, the sizes, and the env name and config. A
sweep writes one per member, `members/mNNN/policy.npz`.

    from mjx_tecrl.export import NumpyPolicy
    policy = NumpyPolicy.load("runs/.../policy.npz")
    ctrl = policy.act(obs)           # the deterministic policy, in the actuators' control range

`act` is the JAX deterministic policy (tanh of the actor's mean, spec §2.1, then the env's [-1, 1] -> control
range map) in float32 numpy: GELU as erf, LayerNorm as flax computes it; it matches the JAX policy to float32
rounding (tests/test_export.py). A policy trained with `--matmul-dtype bfloat16` is computed here in float32.

`python -m mjx_tecrl.export RUN_DIR --onnx` also writes `policy.onnx`: the same JAX function, obs [batch,
observation_size] -> control [batch, action_size], converted by jax2onnx (`pip install 'mjx_tecrl[onnx]'`).
"""

from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

FORMAT_VERSION = 1
FILE_NAME = "policy.npz"
BEST_NAME = "policy_best.npz"  # the policy of the run's best evaluation (meta: its env_steps and eval_return)
ONNX_NAME = "policy.onnx"
ONNX_HINT = "pip install 'mjx_tecrl[onnx]' (jax2onnx, onnxruntime)"
_LN_EPSILON = 1e-6  # flax.linen.LayerNorm's default
_erf = np.frompyfunc(math.erf, 1, 1)


EXPORTS_DIR = "exports"  # RUN_DIR/exports/<checkpoint>/: the policy files exported from a checkpoint not latest


def export_dir(run_dir: str, which: str = "latest") -> str:
    """Where `export --checkpoint which` writes: the run directory for latest (the files the run writes itself),
    RUN_DIR/exports/<which> for the others, so that exporting another checkpoint overwrites nothing of the run's."""
    return run_dir if which == "latest" else os.path.join(run_dir, EXPORTS_DIR, which)


def policy_path(run_dir: str, member: int | None = None, name: str = FILE_NAME) -> str:
    """Where the policy file of a run (or of sweep member `member`) goes."""
    from mjx_tecrl.rundir import metrics_dir

    return os.path.join(metrics_dir(run_dir, member), name)


def action_map(env) -> tuple[np.ndarray, np.ndarray]:
    """(scale, offset): control = offset + scale * action for actions in [-1, 1]; an env without the map (not a
    ScaledActionEnv) takes the actions as they are."""
    scale = np.asarray(getattr(env, "action_scale", np.ones(env.action_size)), np.float32)
    return scale, np.asarray(getattr(env, "action_offset", np.zeros(env.action_size)), np.float32)


def policy_arrays(
    config, env, learner, member: int = 0, seed: int | None = None, info: dict[str, Any] | None = None
) -> dict[str, np.ndarray]:
    """The policy file's contents from a run's `Config`, its env (a `ScaledActionEnv`, or any env with
    `observation_size` and `action_size`) and a `LearnerState`; `info` goes into its meta."""
    params = learner.actor_params["params"]["MLP_0"]
    arrays = {
        f"actor/{layer}/{name}": np.asarray(v, np.float32) for layer, p in params.items() for name, v in p.items()
    }
    norm = learner.obs_normalizer
    meta = {
        "format_version": FORMAT_VERSION,
        "env": config.env,
        "physics": config.physics,
        "algo": config.algo,
        "member": member,
        "seed": config.seed if seed is None else seed,
        "observation_size": int(env.observation_size),
        "action_size": int(env.action_size),
        "hidden_sizes": list(config.hidden_sizes),
        "layer_norm": bool(config.actor_layer_norm),
        "normalize_obs": bool(config.normalize_obs),
        "config": config.to_dict(),
        **(info or {}),
    }
    scale, offset = action_map(env)
    return {
        **arrays,
        "obs_mean": np.asarray(norm.mean, np.float32),
        "obs_var": np.asarray(norm.var, np.float32),
        "action_scale": scale,
        "action_offset": offset,
        "meta": np.frombuffer(json.dumps(meta, sort_keys=True).encode(), np.uint8),
    }


def save(path: str, arrays: dict[str, np.ndarray]) -> str:
    """Write atomically (temp file + rename)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
    return path


def export_run(run_dir: str, onnx: bool = False, which: str = "latest") -> list[str]:
    """Write the policy file (and with `onnx`, policy.onnx) of every policy in `run_dir` from its checkpoint
    `which`, under `export_dir`; returns the paths. ConfigError for a directory without a usable run or
    checkpoint, or `onnx` without jax2onnx."""
    from mjx_tecrl.policy import load_run

    if onnx:
        _jax2onnx()
    run = load_run(run_dir, which=which)
    out, paths = export_dir(run_dir, which), []
    for m in run.members:
        # latest: the same file the run wrote at its end; another checkpoint says which it is in the meta
        info = {} if which == "latest" else {"checkpoint": which, "env_steps": run.env_steps}
        arrays = policy_arrays(run.config, run.env, m.learner, m.index, m.seed, info)
        paths.append(save(policy_path(out, m.index if run.is_sweep else None), arrays))
        if onnx:
            path = policy_path(out, m.index if run.is_sweep else None, ONNX_NAME)
            with open(path + ".tmp", "wb") as f:
                f.write(onnx_policy(run, m.index))
            os.replace(path + ".tmp", path)
            paths.append(path)
    return paths


def _jax2onnx():
    from mjx_tecrl.config import ConfigError

    try:
        from jax2onnx import to_onnx
    except ImportError:
        raise ConfigError(f"--onnx needs jax2onnx: {ONNX_HINT}") from None
    return to_onnx


def onnx_policy(run, member: int = 0) -> bytes:
    """Member `member`'s deterministic policy, obs [batch, observation_size] -> control [batch, action_size] (the
    JAX function `act` reproduces), as a serialised ONNX model (input `obs`, output `ctrl`, float32)."""
    import jax.numpy as jnp

    from mjx_tecrl.episodes import policy_view

    learner = policy_view(run.members[member].learner)
    scale, offset = (jnp.asarray(x) for x in action_map(run.env))

    def act(obs):
        return offset + scale * run.fns.learner.deterministic_action(learner, obs)

    model = _jax2onnx()(act, [("batch", int(run.env.observation_size))], model_name="mjx_tecrl_policy",
                        input_names=["obs"], output_names=["ctrl"])  # fmt: skip
    return model.SerializeToString()


@dataclass(frozen=True)
class NumpyPolicy:
    """The deterministic policy of a policy file, in numpy (float32)."""

    layers: list[dict[str, np.ndarray]]  # Dense (kernel, bias) and, before each hidden activation, LayerNorm
    obs_mean: np.ndarray
    obs_var: np.ndarray
    action_scale: np.ndarray
    action_offset: np.ndarray
    meta: dict[str, Any]

    @classmethod
    def load(cls, path: str) -> NumpyPolicy:
        with np.load(path) as f:
            data = {k: f[k] for k in f.files}
        meta = json.loads(bytes(data.pop("meta")).decode())
        if meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{path}: policy format {meta.get('format_version')!r}; this reads {FORMAT_VERSION}")
        n_hidden = len(meta["hidden_sizes"])
        layers = []
        for i in range(n_hidden + 1):
            layers.append({"kernel": data[f"actor/Dense_{i}/kernel"], "bias": data[f"actor/Dense_{i}/bias"]})
            if i < n_hidden and meta["layer_norm"]:
                layers.append({"scale": data[f"actor/LayerNorm_{i}/scale"], "bias": data[f"actor/LayerNorm_{i}/bias"]})
        return cls(layers, data["obs_mean"], data["obs_var"], data["action_scale"], data["action_offset"], meta)

    def act_unit(self, obs: np.ndarray) -> np.ndarray:
        """The deterministic action in [-1, 1]^|A| (what the learner outputs) for obs [..., observation_size]."""
        x = np.asarray(obs, np.float32)
        if self.meta["normalize_obs"]:
            x = np.clip((x - self.obs_mean) / np.sqrt(np.maximum(self.obs_var, 1e-6)), -10.0, 10.0)
        dense = [layer for layer in self.layers if "kernel" in layer]
        norms = iter(layer for layer in self.layers if "scale" in layer)
        for i, layer in enumerate(dense):
            x = (x @ layer["kernel"] + layer["bias"]).astype(np.float32)
            if i < len(dense) - 1:
                if self.meta["layer_norm"]:
                    x = _layer_norm(x, next(norms))
                x = (0.5 * x * (1.0 + _erf(x.astype(np.float64) / math.sqrt(2.0)).astype(np.float64))).astype(
                    np.float32
                )
        mean = x[..., : self.meta["action_size"]]  # the actor's output is (mean, log_std)
        return np.tanh(mean).astype(np.float32)

    def act(self, obs: np.ndarray) -> np.ndarray:
        """The deterministic policy's control for obs [..., observation_size], in the actuators' control range."""
        return (self.action_offset + self.action_scale * self.act_unit(obs)).astype(np.float32)


def _layer_norm(x: np.ndarray, p: dict[str, np.ndarray]) -> np.ndarray:
    mean = np.mean(x, axis=-1, keepdims=True)
    var = np.maximum(np.mean(x * x, axis=-1, keepdims=True) - mean * mean, 0.0)  # flax's fast variance
    return ((x - mean) / np.sqrt(var + _LN_EPSILON) * p["scale"] + p["bias"]).astype(np.float32)


def main(argv: list[str] | None = None) -> int:
    from mjx_tecrl import commands
    from mjx_tecrl.config import ConfigError
    from mjx_tecrl.policy import add_checkpoint_flag

    p = commands.Parser(error_name="export", prog="python -m mjx_tecrl.export", description=__doc__.splitlines()[0])
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories (train.py --out, or a sweep)")
    p.add_argument("--onnx", action="store_true", help=f"also write policy.onnx ({ONNX_HINT})")
    add_checkpoint_flag(p)
    args = p.parse_args(argv)
    for run_dir in args.run_dirs:
        try:
            paths = export_run(run_dir, onnx=args.onnx, which=args.checkpoint)
        except ConfigError as e:
            print(f"export: error: {e}", file=sys.stderr)  # one line, as commands.fail, but returned
            return commands.EXIT_BAD_INPUT
        for path in paths:
            print(f"wrote {path} ({os.path.getsize(path) / 2**10:.0f} KiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
