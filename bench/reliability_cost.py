"""XLA's static cost of one training chunk: flops and bytes accessed (load-independent, unlike timings).

Run it in two checkouts to compare the chunk with and without the reliability checks (non-finite tracking,
divergence masking, gradient norms), e.g.
    PYTHONPATH=/path/to/main python bench/reliability_cost.py
    python bench/reliability_cost.py
The env is tests/toy_envs.py's CounterEnv (no physics), so the learner dominates: the relative overhead on a
real MJX task, whose physics adds to the denominator, is smaller.
"""

import json
import os
import sys

import jax

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from toy_envs import CounterEnv  # noqa: E402

import mjx_tecrl.loop as loop  # noqa: E402
from mjx_tecrl.config import Config  # noqa: E402


def main():
    config = Config(num_envs=32, batch_size=256, buffer_size=100_000, updates_per_step=8 / 32, eval_every=32 * 8,
                    learning_starts=1000, hidden_sizes=(256, 256, 256))  # fmt: skip
    fns = loop.make_train(config, CounterEnv())
    ts = jax.eval_shape(fns._init, jax.random.PRNGKey(0), config.hyperparams())
    compiled = jax.jit(fns.run_chunk).lower(ts).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    print(json.dumps({"loop": loop.__file__, "chunk_iters": fns.chunk_iters, "flops": cost.get("flops"),
                      "bytes_accessed": cost.get("bytes accessed")}))  # fmt: skip


if __name__ == "__main__":
    main()
