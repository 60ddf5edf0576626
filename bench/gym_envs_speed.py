"""Env steps per second of the Gymnasium MJX tasks: `faithful` vs `fast` physics, at 64 and 256 environments.

Steps the registry env the way the pipeline does (`mjx_tecrl.rollout.step`: vmapped step, auto-reset) with
uniform random actions, in one jitted scan; times the second call (the first compiles). One JSON line per
(task, physics, num_envs):

    python bench/gym_envs_speed.py hopper ant --num-envs 64 256 --steps 200
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
from mjx_tecrl.envs import registry

from mjx_tecrl import rollout


def measure(name: str, physics: str, num_envs: int, steps: int, repeats: int = 2) -> dict:
    env = registry.make(name, physics)

    def program(state, key):
        def body(state, k):
            k_act, k_reset = jax.random.split(k)
            action = jax.random.uniform(k_act, (num_envs, env.action_size), minval=-1.0, maxval=1.0)
            state, _, _ = rollout.step(env, state, action, k_reset, 1000)
            return state, None

        return jax.lax.scan(body, state, jax.random.split(key, steps))[0]

    state = rollout.reset(env, jax.random.PRNGKey(0), num_envs)
    t0 = time.time()
    fn = jax.jit(program).lower(state, jax.random.PRNGKey(1)).compile()
    compile_s = time.time() - t0
    state = jax.block_until_ready(fn(state, jax.random.PRNGKey(1)))  # warm
    best = float("inf")
    for i in range(repeats):
        t0 = time.time()
        state = jax.block_until_ready(fn(state, jax.random.PRNGKey(2 + i)))
        best = min(best, time.time() - t0)
    ok = bool(jnp.all(jnp.isfinite(state.sim.obs)))
    return dict(
        env=name, physics=physics, num_envs=num_envs, steps_per_s=num_envs * steps / best,
        compile_s=round(compile_s, 1), finite=ok, backend=jax.default_backend(),
    )  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("envs", nargs="*", default=list(registry.bare_names()))
    p.add_argument("--physics", nargs="+", default=["faithful", "fast"])
    p.add_argument("--num-envs", nargs="+", type=int, default=[64, 256])
    p.add_argument("--steps", type=int, default=100, help="iterations of all envs per timed call")
    a = p.parse_args()
    for name in a.envs:
        for n in a.num_envs:
            for physics in a.physics:  # side by side, so the ratio is measured under the same load
                print(json.dumps(measure(name, physics, n, a.steps)), flush=True)


if __name__ == "__main__":
    main()
