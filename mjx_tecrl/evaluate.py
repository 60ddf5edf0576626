"""Evaluate a run's saved policies: N episodes of each (every member of a sweep), a table and a JSON file.

    python -m mjx_tecrl.evaluate RUN_DIR [--episodes 10] [--physics fast] [--stochastic] [--video policy.mp4]
    python -m mjx_tecrl.evaluate RUN_DIR --sim mujoco       # the exported policy in Gymnasium's MuJoCo C env

`--sim mjx` (the default) runs the training-time evaluation (`episodes.evaluate_episodes`) of the checkpoint's
policies, every member vmapped in one jitted program; with `--episodes` equal to the run's `num_eval_envs` and
`--seed S`, it is `TrainFns.evaluate(learner, PRNGKey(S))` exactly. `--stochastic` samples from the policy
(spec §2.1) instead of taking tanh of its mean.

`--sim mujoco` runs the policy file (`policy.npz`, `mjx_tecrl.export`; written from the checkpoint when missing)
in numpy in Gymnasium's own v5 task (MuJoCo C, float64): the policy outside MJX, sim to sim. The parity tests
(docs/envs.md) say how close the two simulators are on each task.

Writes RUN_DIR/evaluation_<sim>.json (or `--out`): each policy's returns and lengths, and their statistics.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any, NoReturn

import numpy as np

from mjx_tecrl import commands
from mjx_tecrl.config import ConfigError

PROG = "python -m mjx_tecrl.evaluate"
SIMS = ("mjx", "mujoco")


def statistics(returns: np.ndarray, lengths: np.ndarray) -> dict[str, float]:
    """The table's columns for one policy's episodes."""
    returns = np.asarray(returns, np.float64)
    return {
        "return_mean": float(np.mean(returns)),
        "return_std": float(np.std(returns)),
        "return_min": float(np.min(returns)),
        "return_max": float(np.max(returns)),
        "length_mean": float(np.mean(lengths)),
    }


# --- MJX: the checkpoint's policies, on the accelerator ----------------------------------------------------
def mjx_episodes(run, episodes: int, seed: int, stochastic: bool = False) -> dict[str, np.ndarray]:
    """Every member's episodes in one jitted program: return, length and diverged, each [members, episodes]."""
    import jax

    from mjx_tecrl.episodes import policy_view

    learners = jax.tree.map(lambda *xs: np.stack(xs), *[policy_view(m.learner) for m in run.members])
    ret, length, lost = jax.device_get(mjx_program(run, episodes, stochastic)(learners, jax.random.PRNGKey(seed)))
    return {"return": np.asarray(ret), "length": np.asarray(length), "diverged": np.asarray(lost)}


def mjx_program(run, episodes: int, stochastic: bool = False):
    """jit(f(learners [members, ...], key) -> (return, length, diverged), each [members, episodes]).

    The resets use `split(key, episodes)`, as `TrainFns.evaluate` does; a stochastic policy draws its actions
    from `fold_in(key, 1)`."""
    import jax

    from mjx_tecrl import rollout
    from mjx_tecrl.episodes import evaluate_episodes

    env = getattr(run.fns.env, "nominal", run.fns.env)  # trained with domain randomisation: the task itself
    learner_fns = run.fns.learner

    def one(learner, key):
        sim = rollout.vmap_envs(env.reset, jax.random.split(key, episodes))
        if stochastic:
            act_key = jax.random.fold_in(key, 1)

            def policy(obs, step):
                k = jax.random.fold_in(act_key, step)
                return learner_fns.sample_action(learner.actor_params, learner, obs, k)[0]

        else:

            def policy(obs, step):
                return learner_fns.deterministic_action(learner, obs)

        ret, length, _, lost = evaluate_episodes(env, policy, sim, run.config.episode_length)
        return ret, length, lost

    return jax.jit(jax.vmap(one, in_axes=(0, None)))


# --- MuJoCo C: the exported policy in Gymnasium's env -----------------------------------------------------
def mujoco_episodes(policy, gym_id: str, episodes: int, seed: int, episode_length: int) -> dict[str, np.ndarray]:
    """`policy` (an `export.NumpyPolicy`) in `gymnasium.make(gym_id)`, episode i reset with seed `seed + i`,
    to termination or `episode_length` steps. Returns return and length, each [episodes]."""
    import gymnasium

    env = gymnasium.make(gym_id, max_episode_steps=episode_length)
    returns, lengths = np.zeros(episodes), np.zeros(episodes, np.int64)
    try:
        for i in range(episodes):
            obs, _ = env.reset(seed=seed + i)
            done = False
            while not done:
                obs, reward, terminated, truncated, _ = env.step(policy.act(obs).astype(np.float64))
                returns[i] += float(reward)
                lengths[i] += 1
                done = terminated or truncated
    finally:
        env.close()
    return {"return": returns, "length": lengths, "diverged": np.zeros(episodes, bool)}


def gym_id_of(env_name: str) -> str:
    """Gymnasium's id of a registry task (`hopper` -> `Hopper-v5`); ConfigError for tasks without one."""
    from mjx_tecrl.envs import registry

    try:
        gym_id = registry.spec(env_name).gym_id
    except registry.UnknownEnvError as e:
        raise ConfigError(str(e)) from None
    if not gym_id:
        raise ConfigError(f"--sim mujoco: env {env_name!r} has no Gymnasium task; it runs the Gymnasium tasks only")
    return gym_id


def policy_files(run_dir: str, which: str = "latest") -> list[str]:
    """The run's policy files (one per member) of checkpoint `which`, exported from it where any is missing."""
    from mjx_tecrl import export
    from mjx_tecrl.rundir import checkpoint_file, read_sweep

    checkpoint_file(run_dir, which)  # ConfigError before anything is written
    sweep, out = read_sweep(run_dir), export.export_dir(run_dir, which)
    paths = [export.policy_path(out, i) for i in range(len(sweep["members"]))] if sweep else [export.policy_path(out)]
    if not all(os.path.isfile(p) for p in paths):
        export.export_run(run_dir, which=which)
    return paths


# --- the command ----------------------------------------------------------------------------------------
def fail(message: str) -> NoReturn:
    commands.fail(PROG, message)


def evaluate(args: argparse.Namespace) -> tuple[dict[str, Any], Any]:
    """The evaluation the flags ask for: what evaluation_<sim>.json holds, and the loaded run (`--sim mjx`; else
    None). ConfigError on bad input."""
    from mjx_tecrl.rundir import read_config, read_sweep

    config, sweep = read_config(args.run_dir), read_sweep(args.run_dir)
    t0 = time.time()
    run = None
    if args.sim == "mujoco":
        from mjx_tecrl.export import NumpyPolicy

        gym_id = gym_id_of(config.env)  # before anything is loaded
        policies = [NumpyPolicy.load(p) for p in policy_files(args.run_dir, args.checkpoint)]
        seeds = [int(p.meta["seed"]) for p in policies]
        per = [mujoco_episodes(p, gym_id, args.episodes, args.seed, config.episode_length) for p in policies]
        results = {k: np.stack([r[k] for r in per]) for k in per[0]}
        physics, env_steps = f"MuJoCo C ({gym_id})", None
    else:
        from mjx_tecrl.policy import load_run

        run = load_run(args.run_dir, physics=args.physics, which=args.checkpoint)
        seeds = [m.seed for m in run.members]
        results = mjx_episodes(run, args.episodes, args.seed, args.stochastic)
        physics, env_steps = args.physics or config.physics, run.env_steps
    rows = []
    for i, seed in enumerate(seeds):
        rows.append({
            "member": i, "seed": seed, "hyperparams": sweep["members"][i]["hyperparams"] if sweep else {},
            **statistics(results["return"][i], results["length"][i]),
            "diverged": int(np.sum(results["diverged"][i])),
            "returns": [float(x) for x in results["return"][i]],
            "lengths": [int(x) for x in results["length"][i]],
        })  # fmt: skip
    return {
        "run_dir": args.run_dir, "env": config.env, "algo": config.algo, "sim": args.sim, "physics": physics,
        "checkpoint": args.checkpoint,
        "episodes": args.episodes, "seed": args.seed, "stochastic": args.stochastic, "env_steps": env_steps,
        "wall_s": round(time.time() - t0, 2), "members": rows,
    }, run  # fmt: skip


def table(result: dict[str, Any]) -> str:
    head = ("member", "seed", "return mean", "std", "min", "max", "length", "diverged")
    rows = [head] + [
        (str(r["member"]), str(r["seed"]), *(f"{r[k]:.1f}" for k in ("return_mean", "return_std", "return_min",
         "return_max", "length_mean")), str(r["diverged"]))
        for r in result["members"]
    ]  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows)


def main(argv: list[str] | None = None) -> int:
    from mjx_tecrl.envs.gym_base import PHYSICS
    from mjx_tecrl.policy import add_checkpoint_flag

    p = commands.Parser(error_name=PROG, prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run or sweep directory (train.py --out)")
    p.add_argument("--episodes", type=int, default=10, help="episodes per policy (default 10)")
    p.add_argument("--seed", type=int, default=0, help="seed of the episodes' initial states (default 0)")
    p.add_argument("--sim", choices=SIMS, default="mjx", help="mjx: the checkpoint in MJX (default); mujoco: the "
                   "policy file in Gymnasium's MuJoCo C task")  # fmt: skip
    p.add_argument("--physics", choices=PHYSICS, default=None, help="MJX solver settings to evaluate under "
                   "(default: the run's)")  # fmt: skip
    p.add_argument("--stochastic", action="store_true", help="sample actions from the policy (default: its mean)")
    p.add_argument("--video", default="", help="also render member --member's first episodes to this .mp4")
    p.add_argument("--member", type=int, default=0, help="the member --video renders (default 0)")
    p.add_argument("--out", default="", help="JSON path (default RUN_DIR/evaluation_<sim>.json; with --checkpoint "
                   "other than latest, evaluation_<sim>_<checkpoint>.json)")  # fmt: skip
    add_checkpoint_flag(p)
    args = p.parse_args(argv)
    if args.episodes < 1:
        fail(f"--episodes {args.episodes}: must be at least 1")
    if args.sim == "mujoco" and (args.physics or args.stochastic or args.video):
        fail("--physics, --stochastic and --video apply to --sim mjx (the policy file holds the deterministic "
             "policy; Gymnasium's task has its own physics)")  # fmt: skip
    if not os.path.isdir(args.run_dir):
        fail(f"{args.run_dir!r} is not a directory")
    from mjx_tecrl import render

    try:
        backend = render.check_video(args.video, "--video") if args.video else None  # before the run is loaded
        result, run = evaluate(args)
        if args.video:
            video = render.render_loaded(run, args.video, backend, episodes=min(args.episodes, 2),
                                         member=args.member, seed=args.seed)  # fmt: skip
            result["video"] = video.video
    except (ConfigError, render.RendererMissing) as e:
        fail(str(e))
    suffix = "" if args.checkpoint == "latest" else f"_{args.checkpoint}"
    out = args.out or os.path.join(args.run_dir, f"evaluation_{args.sim}{suffix}.json")
    with open(out, "w") as f:
        json.dump(result, f, indent=1)
    print(f"{result['env']} ({result['algo']}), {result['physics']}, {args.episodes} "
          f"{'stochastic' if args.stochastic else 'deterministic'} episodes per policy:")  # fmt: skip
    print(table(result))
    print(f"wrote {out}" + (f" and {result['video']}" if args.video else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
