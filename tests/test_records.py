"""The host's records: `entropy_warning` and the `Reporter` that prints it once per member."""

from __future__ import annotations

import io
import math

import pytest

from mjx_tecrl import records
from mjx_tecrl.config import Config

# Swimmer at gamma 0.9999, seed 1 at 59,936 env steps (docs/performance.md, the serial preset against SB3): entropy
# -5.87 per step against rho H0 = -2, while the lagging entropy critic kept the trajectory entropy above its budget.
COLLAPSING = {"train/policy_entropy": -5.87, "train/step_entropy_budget": -2.0, "train/trajectory_entropy": -282.7,
              "train/entropy_budget": -2380.7, "train/alpha": 1e-3, "diag/entropy_floor_binds": 0.0,
              "eval/episode_return": 40.0, "train/env_steps_per_second": 20.0}  # fmt: skip


@pytest.mark.parametrize(
    "change, warns",
    [
        ({}, True),
        ({"train/policy_entropy": -2.0 - records.ENTROPY_WARNING_NATS + 0.1}, False),  # within the allowance
        ({"train/policy_entropy": -2.0 - records.ENTROPY_WARNING_NATS - 0.1}, True),
        ({"train/trajectory_entropy": -2400.0}, False),  # the constraint reads violated: alpha already rises
        ({"diag/entropy_floor_binds": 0.5}, False),  # the entropy floor is raising alpha
        ({"train/step_entropy_budget": math.nan}, False),  # not dsac-e (no per-step budget logged)
    ],
    ids=["collapsing", "within", "just-beyond", "violated", "floor-acting", "no-budget"],
)
def test_entropy_warning_only_when_the_entropy_is_far_below_a_budget_that_reads_satisfied(change, warns):
    warning = records.entropy_warning({**COLLAPSING, **change})
    assert (warning is not None) == warns
    if warns:
        assert "below rho*H0 = -2.0" in warning and "--entropy-floor" in warning


def test_entropy_warning_is_silent_for_the_per_step_variants():
    row = {k: v for k, v in COLLAPSING.items() if k not in ("train/step_entropy_budget", "train/entropy_budget")}
    assert records.entropy_warning(row) is None


def test_reporter_prints_each_members_warning_once_and_names_the_member():
    out = io.StringIO()
    reporter = records.Reporter(Config(progress=False), 0, out)
    fine = {**COLLAPSING, "train/policy_entropy": -2.5}
    reporter(5000, [fine, COLLAPSING])
    reporter(10000, [COLLAPSING, COLLAPSING])
    lines = out.getvalue().splitlines()
    warnings = [line for line in lines if line.startswith("warning")]
    assert [w.split(": policy")[0] for w in warnings] == [
        "warning at env step 5000: member 1",
        "warning at env step 10000: member 0",
    ]
    assert len(lines) == 4  # and one progress line per evaluation

    single = io.StringIO()
    reporter = records.Reporter(Config(progress=False), 0, single)
    reporter(5000, [COLLAPSING])
    reporter(10000, [COLLAPSING])
    assert single.getvalue().count("warning at env step 5000: policy entropy -5.9 nats") == 1
    assert single.getvalue().count("warning") == 1
