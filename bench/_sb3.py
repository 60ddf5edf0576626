"""The reference learner: Stable-Baselines3's SAC on Gymnasium's native MuJoCo task, one seed, as a run directory.

    python bench/_sb3.py --task halfcheetah --seed 0 --total-steps 100000 --out runs/reference/halfcheetah/sb3-sac/s0

SB3's defaults (2 x 256 ReLU networks, Adam at 3e-4, batch 256, tau 0.005, a 1M buffer, entropy coefficient learned
from 1.0 toward -|A|, log-std clamped to [-20, 2]), with `learning_starts` and the replay ratio (`train_freq` 1,
`gradient_steps` = updates per env step) set like ours, and gamma as ours: the task's preset's, or `--gamma`. Every
`--eval-every` env steps, 10 deterministic episodes on a separate env. Writes what `mjx_tecrl.plot` reads:
`config.json`, one `metrics.csv` row per evaluation (written as it happens), and `summary.json` at the end. Needs the
bench extra (`pip install -e '.[bench]'`: stable-baselines3, torch); torch runs on `--torch-threads` CPU threads.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import time


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", required=True, help="a bare task name of mjx_tecrl's registry (its Gymnasium id)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--total-steps", type=int, required=True)
    p.add_argument("--learning-starts", type=int, default=10_000)
    p.add_argument("--updates-per-step", type=int, default=1, help="gradient steps per env step (1 env)")
    p.add_argument("--eval-every", type=int, default=5_000)
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument("--torch-threads", type=int, default=1)
    p.add_argument("--gamma", type=float, default=None, help="default: the task's (its preset's, as train.py's)")
    p.add_argument("--out", required=True, help="run directory (must not hold a run)")
    args = p.parse_args(argv)
    if os.path.exists(os.path.join(args.out, "summary.json")):
        p.error(f"--out {args.out!r} already holds a finished run")

    import gymnasium as gym
    import numpy as np
    import stable_baselines3
    import torch
    from mjx_tecrl.envs.gym_tasks import TASKS
    from stable_baselines3 import SAC
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.monitor import Monitor

    from mjx_tecrl.config import make_config

    torch.set_num_threads(args.torch_threads)
    gym_id = TASKS[args.task][1]
    os.makedirs(args.out, exist_ok=True)
    # The task's resolved config, so that mjx_tecrl.plot groups this run by algo alone; the SB3 values on top.
    gamma = {} if args.gamma is None else {"gamma": args.gamma}
    config = make_config(env=args.task, total_steps=args.total_steps, seed=args.seed, out=args.out, **gamma).to_dict()
    config.update(algo="sb3-sac", hidden_sizes=[256, 256], actor_lr=3e-4, critic_lr=3e-4, alpha_lr=3e-4,
                  init_log_alpha=0.0, tau=0.005, policy_delay=1, num_envs=1, learning_starts=args.learning_starts,
                  updates_per_step=float(args.updates_per_step), eval_every=args.eval_every,
                  num_eval_envs=args.eval_episodes, sb3_version=stable_baselines3.__version__,
                  torch_version=torch.__version__, gymnasium_id=gym_id)  # fmt: skip
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)

    env, eval_env = gym.make(gym_id), Monitor(gym.make(gym_id))
    eval_env.reset(seed=args.seed + 1_000_003)
    model = SAC("MlpPolicy", env, learning_starts=args.learning_starts, train_freq=1, gamma=config["gamma"],
                gradient_steps=args.updates_per_step, seed=args.seed, device="cpu", verbose=0)  # fmt: skip
    csv_path = os.path.join(args.out, "metrics.csv")
    columns = ["env_steps", "wall_time_s", "eval/episode_return", "eval/episode_return_std",
               "eval/episode_return_min", "eval/episode_return_max", "eval/episode_length", "train/alpha"]  # fmt: skip
    t0 = time.time()
    eval_time = [0.0]
    returns: list[float] = []

    class Evaluate(BaseCallback):
        def _on_step(self) -> bool:
            if self.num_timesteps % args.eval_every == 0:
                t = time.time()
                rets, lengths = evaluate_policy(self.model, eval_env, n_eval_episodes=args.eval_episodes,
                                                deterministic=True, return_episode_rewards=True)  # fmt: skip
                eval_time[0] += time.time() - t
                alpha = float(torch.exp(self.model.log_ent_coef.detach()).item())
                row = [self.num_timesteps, time.time() - t0, np.mean(rets), np.std(rets), np.min(rets), np.max(rets),
                       np.mean(lengths), alpha]  # fmt: skip
                returns.append(float(np.mean(rets)))
                new = not os.path.exists(csv_path)
                with open(csv_path, "a", newline="") as f:
                    w = csv.writer(f)
                    if new:
                        w.writerow(columns)
                    w.writerow(row)
                print(f"steps {self.num_timesteps:>8}  eval_return {np.mean(rets):9.2f}  alpha {alpha:.4f}  "
                      f"wall {time.time() - t0:.0f}s", flush=True)  # fmt: skip
            return True

    model.learn(total_timesteps=args.total_steps, callback=Evaluate())
    wall = time.time() - t0
    summary = {
        "env": args.task, "algo": "sb3-sac", "seed": args.seed, "env_steps": args.total_steps,
        "gradient_steps": int(model._n_updates), "wall_time_s": wall, "eval_time_s": eval_time[0],
        "compile_time_s": 0.0, "final_eval_return": returns[-1] if returns else float("nan"),
        "final_eval_return_last3": float(np.mean(returns[-3:])) if returns else float("nan"),
        "best_eval_return": max(returns) if returns else float("nan"), "torch_threads": args.torch_threads,
    }  # fmt: skip
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    print(f"done: {args.total_steps} env steps, final {summary['final_eval_return']:.1f}, {wall:.0f}s wall", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
