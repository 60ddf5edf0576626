"""`train.py`'s command line, generated from the `Config` dataclass fields (one flag per field)."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any, NoReturn

from mjx_tecrl.config import Config, ConfigError

EXIT_BAD_INPUT = 2


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line on stderr and exit status 2 (no usage dump)."""

    def error(self, message: str) -> NoReturn:
        fail(message)


def fail(message: str) -> NoReturn:
    print(f"train.py: error: {message}", file=sys.stderr)
    raise SystemExit(EXIT_BAD_INPUT)


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.replace(",", " ").split())
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid list of integers: {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError(f"invalid list of integers: {text!r}")
    return values


def _finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number: {text!r}") from None
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="train.py",
        description="Train a DSAC-E (or DSAC-T / SAC) agent on an MJX task. Flags not given come from "
        "the task's preset (--preset), then from the spec's defaults.",
        argument_default=argparse.SUPPRESS,
    )
    parser.add_argument("--list-envs", action="store_true", help="print the task table and exit")
    for f in dataclasses.fields(Config):
        flag = "--" + f.name.replace("_", "-")
        default = f.default
        help_text = f"{f.metadata.get('help', '')} (default {default!r})"
        if isinstance(default, bool):
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, help=help_text)
        elif isinstance(default, tuple):
            parser.add_argument(flag, dest=f.name, type=_int_list, metavar="N,N,...", help=help_text)
        elif isinstance(default, int):
            parser.add_argument(flag, dest=f.name, type=int, metavar="N", help=help_text)
        elif isinstance(default, float):
            parser.add_argument(flag, dest=f.name, type=_finite_float, metavar="X", help=help_text)
        else:
            parser.add_argument(flag, dest=f.name, type=str, help=help_text)
    return parser


def parse_overrides(argv: list[str] | None = None) -> tuple[dict[str, Any], bool]:
    """The flags the user gave, as Config field overrides, and whether --list-envs was asked."""
    ns = vars(build_parser().parse_args(argv))
    list_envs = bool(ns.pop("list_envs", False))
    return ns, list_envs


def list_envs_table() -> str:
    """The bare task names (brax's versions: brax:<name>) with sizes, control timestep, frame skip and source."""
    from mjx_tecrl.envs import registry

    rows = [("name", "obs", "act", "dt", "frame_skip", "time_limit", "rho (tuned)", "source")]
    for name in registry.bare_names():
        spec = registry.spec(name)
        d = spec.describe()
        sizes = (str(d["observation_size"]), str(d["action_size"]), f"{d['dt']:g}", str(d["frame_skip"]))
        limit, rho = str(spec.tuned.get("episode_length", 1000)), str(spec.tuned.get("rho", 1.0))
        rows.append((name, *sizes, limit, rho, d["source"]))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    overrides, want_list = parse_overrides(argv)
    if want_list:
        print(list_envs_table())
        return 0
    from mjx_tecrl.run import NonFiniteError, prepare, run

    try:
        plan = prepare(overrides)
    except ConfigError as e:
        fail(str(e))
    from mjx_tecrl.checkpoint import CheckpointError

    try:
        summary = run(plan)
    except CheckpointError as e:  # e.g. a checkpoint of another structure: refused, nothing written
        fail(f"--resume {plan.run_dir!r}: {e}")
    except NonFiniteError as e:
        print(f"train.py: stopped: {e}", file=sys.stderr)
        return 3
    return 130 if summary.get("interrupted") else 0
