"""Host side of the chunk's non-finite report: split it off the metrics and word the stop message.

The compiled chunk (`loop.TrainFns.run_chunk`) returns, per tracked quantity, `diag/nonfinite/<quantity>`:
the first iteration of the chunk at which it was NaN or inf, or -1. Quantities are the per-iteration learner
metrics (losses, gradient norms, ...) under their own names, and `observations`, `obs_normalizer`,
`actor_params`, `reward_critic_params`, `entropy_critic_params`, `log_alpha`.
"""

from __future__ import annotations

from typing import Any

# Light on purpose (no jax): run.py imports this before `jax.distributed.initialize` may be called.
NONFINITE_PREFIX = "diag/nonfinite/"


def split_nonfinite(metrics: dict[str, Any]) -> tuple[dict[str, Any], dict[str, int]]:
    """(metrics without the report, {quantity: first bad iteration of the chunk} for the bad ones only)."""
    rest, bad = {}, {}
    for name, value in metrics.items():
        if name.startswith(NONFINITE_PREFIX):
            if int(value) >= 0:
                bad[name[len(NONFINITE_PREFIX) :]] = int(value)
        else:
            rest[name] = value
    return rest, bad


def describe(quantity: str) -> str:
    """A reader's name: `reward_critic grad norm`, `actor loss`, `actor params`; other metrics as they are."""
    for prefix, suffix in (("diag/grad_norm_", " grad norm"), ("train/loss_", " loss")):
        if quantity.startswith(prefix):
            return quantity[len(prefix) :] + suffix
    if quantity.endswith("_params"):
        return quantity[: -len("_params")] + " params"
    return quantity


def nonfinite_message(bad: dict[str, int], chunk_start_steps: int, num_envs: int, checkpoint_note: str = "") -> str:
    """One line: what went non-finite first, at which env step, what followed, and the checkpoint's state.

    Iteration i of a chunk that began at env step `chunk_start_steps` ends at env step
    chunk_start_steps + (i + 1) * num_envs.
    """
    first = min(bad.values())
    at_first = sorted(describe(q) for q, i in bad.items() if i == first)
    later = sorted(describe(q) for q, i in bad.items() if i > first)
    step = chunk_start_steps + (first + 1) * num_envs
    text = f"non-finite {', '.join(at_first)} at env step {step}"
    if later:
        more = f" and {len(later) - 4} more" if len(later) > 4 else ""
        text += f" (then also {', '.join(later[:4])}{more})"
    return f"{text}; {checkpoint_note}" if checkpoint_note else text
