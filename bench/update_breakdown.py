"""Where the time of one gradient update goes: the learner's update with parts removed, side by side.

Each case is a compiled scan of `--iters` iterations of `updates_per_iter` updates, as bench/learner.py, and
the cases alternate round-robin. The differences to `full` are the cost of what each case leaves out:
  full          the pipeline's update (replay sample, critic, entropy critic, actor, temperature, targets, metrics)
  no_metrics    the same with the metrics dropped (XLA removes what nothing reads): the bookkeeping's cost
  critic_only   no actor / temperature / target step in any update (only the critics learn)
  sample_only   the replay sampling of the same updates, and nothing else
  gelu_tanh     the full update with GELU's tanh approximation instead of the exact (erf) GELU of spec §2.8
  relu          the full update with ReLU: what GELU's elementwise work costs
The last two change the algorithm and are measurements only. `--policy-delay 1` gives the actor the same
number of steps as brax's SAC (bench/brax_sac.py's `sac-pd1`).

    python bench/update_breakdown.py --algos sac,dsac-e
    python bench/update_breakdown.py --algos sac --policy-delay 1 --quick
"""

from __future__ import annotations

import dataclasses
import functools

import _common as C
import flax.linen as nn
import jax
import jax.numpy as jnp

from mjx_tecrl import replay as replay_lib
from mjx_tecrl.networks import make_networks

VARIANTS = ("full", "no_metrics", "critic_only", "sample_only", "gelu_tanh", "relu")
ACTIVATIONS = {"gelu_tanh": functools.partial(nn.gelu, approximate=True), "relu": nn.relu}


def main(argv=None):
    p = C.parser(__doc__.splitlines()[0])
    p.add_argument("--task", default="hopper", help="sets the observation and action sizes")
    p.add_argument("--algos", type=C.str_list, default="sac,dsac-e")
    p.add_argument("--policy-delay", type=int, default=None, help="default: the config's")
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--variants", type=C.str_list, default=",".join(VARIANTS))
    args = C.parse(p, {"iters": 3, "repeats": 2, "algos": ["sac"], "variants": ["full", "no_metrics"]}, argv)
    C.check_tasks(p, [args.task])
    C.check_algos(p, args.algos)
    for v in args.variants:
        if v not in VARIANTS:
            p.error(f"--variants: unknown {v!r}; allowed: {', '.join(VARIANTS)}")
    if args.iters <= 0:
        p.error(f"--iters {args.iters} must be a positive integer")
    report = C.Report("update_breakdown", args)
    # 8 updates per iteration: the schedule of docs/performance.md's table
    delay = {"policy_delay": args.policy_delay, "updates_per_iter": 8} if args.policy_delay else {"updates_per_iter": 8}
    cases, configs = {}, {}
    for algo in args.algos:
        base = C.config_or_exit(p, env=args.task, algo=algo, **delay)
        config = C.config_or_exit(p, env=args.task, algo=algo, num_envs=16, learning_starts=base.batch_size,
                                  buffer_size=max(base.batch_size, 16) * 4, total_steps=10**9, **delay)  # fmt: skip
        configs[algo] = config
        fns = C.train_fns(config)
        learner, replay = C.learner_and_replay(fns)
        for variant in args.variants:
            chunk = jax.jit(_chunk(_with_activation(fns, variant), variant, args.iters), donate_argnums=0)
            state = C.copy_tree(learner)
            compiled = chunk.lower(state, replay, jax.random.PRNGKey(0)).compile()
            cases[(algo, variant)] = C.Case(compiled, state, replay, C.key_seq(7))
    times = C.alternate(cases, args.repeats)
    per_update = {key: C.median(t) / (args.iters * configs[key[0]].updates_per_iter) for key, t in times.items()}
    for (algo, variant), t in times.items():
        c, ms = configs[algo], 1e3 * per_update[(algo, variant)]
        full = per_update.get((algo, "full"))
        report.add(algo=algo, variant=variant, task=args.task, policy_delay=c.policy_delay, batch_size=c.batch_size,
                   hidden_sizes=list(c.hidden_sizes), updates_per_iter=c.updates_per_iter, iters=args.iters,
                   times_s=t, ms_per_update=ms, share_of_full=ms / (1e3 * full) if full else None)  # fmt: skip
    rows = [(r["algo"], r["policy_delay"], r["variant"], r["ms_per_update"], r["share_of_full"]) for r in report.rows]
    print(C.table(["algo", "policy delay", "case", "ms / update", "vs full"], rows))
    report.write()


def _with_activation(fns, variant: str):
    if variant not in ACTIVATIONS:
        return fns
    c, learner = fns.config, fns.learner
    nets = make_networks(fns.env.action_size, c.hidden_sizes, c.twin_entropy_critic, ACTIVATIONS[variant])
    return dataclasses.replace(fns, learner=dataclasses.replace(learner, networks=nets))


def _chunk(fns, variant: str, iters: int):
    c = fns.config

    def updates(ls, replay, key):
        if variant == "sample_only":  # the same samples, summed so that XLA keeps them
            keys = jax.random.split(key, c.updates_per_iter)
            total = sum(jnp.sum(replay_lib.sample(replay, k, c.batch_size).obs) for k in keys)
            return ls, {"sum": total}
        if variant == "critic_only":
            keys = jax.random.split(key, 2 * c.updates_per_iter)
            for j in range(c.updates_per_iter):
                batch = replay_lib.sample(replay, keys[2 * j], c.batch_size)
                ls, metrics = fns.learner.update(ls, batch, keys[2 * j + 1], update_actor=False)
            return ls, metrics
        return fns._updates(ls, replay, key)  # the exact schedule run_chunk uses (loop.py)

    def chunk(ls, replay, key):
        def body(ls, k):
            ls, metrics = updates(ls, replay, k)
            return ls, (jnp.zeros(()) if variant == "no_metrics" else metrics)

        ls, metrics = jax.lax.scan(body, ls, jax.random.split(key, iters))
        return ls, jax.tree.map(jnp.mean, metrics)

    return chunk


if __name__ == "__main__":
    main()
