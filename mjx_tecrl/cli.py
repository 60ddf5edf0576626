"""`train.py`'s command line, generated from the `Config` dataclass fields (one flag per field)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from dataclasses import dataclass
from typing import Any, NoReturn

from mjx_tecrl import commands, compile_cache, interrupt
from mjx_tecrl.config import HYPERPARAM_NAMES, Config, ConfigError

FILE_IGNORED_KEYS = ("out", "resume")  # a run's own directory: a config file starts a new run


def load_config_file(path: str) -> dict[str, Any]:
    """Config overrides from a JSON or YAML file (`--config`; an old run's config.json works): Config fields only,
    `out` and `resume` ignored. Flags given with it win over it; its values win over the preset."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(f"--config {path!r} cannot be read ({e.strerror or e})") from None
    is_yaml = path.endswith((".yaml", ".yml"))
    try:
        if is_yaml:
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as e:  # noqa: BLE001 - any parse error is bad input, reported on one line
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError(f"--config {path!r} is not valid {'YAML' if is_yaml else 'JSON'} ({first})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"--config {path!r} must hold a mapping of flag names to values")
    data = {str(k).replace("-", "_"): v for k, v in data.items()}
    try:
        fields = Config.fields_of({k: v for k, v in data.items() if k not in FILE_IGNORED_KEYS})
    except ConfigError as e:
        raise ConfigError(f"--config {path!r}: {e}; keys are train.py's flags") from None
    except TypeError:
        raise ConfigError(f"--config {path!r}: hidden_sizes {data['hidden_sizes']!r} must be a list") from None
    return fields


def fail(message: str) -> NoReturn:
    commands.fail("train.py", message)


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
    parser = commands.Parser(
        error_name="train.py",
        prog="train.py",
        description="Train a DSAC-E (or DSAC-T / SAC) agent on an MJX task. Flags not given come from "
        "the task's preset (--preset), then from the spec's defaults.",
        argument_default=argparse.SUPPRESS,
    )
    parser.add_argument("--list-envs", action="store_true", help="print the task table and exit")
    parser.add_argument(
        "--config", metavar="FILE",
        help="flags from a JSON or YAML file of flag names and values (an old run's config.json starts a new run "
        "like it); flags given here win over it, and it wins over the preset",
    )  # fmt: skip
    parser.add_argument(
        "--print-config", action="store_true",
        help="print the resolved configuration (preset, file and flags applied) as JSON and exit; writes nothing",
    )  # fmt: skip
    sweep = parser.add_argument_group("sweeps (many runs in one program; see mjx_tecrl/sweep.py)")
    sweep.add_argument(
        "--sweep", action="append", metavar="NAME=V1,V2,...",
        help=f"train one member per value of a traced hyperparameter ({', '.join(HYPERPARAM_NAMES)}); several "
        "--sweep flags multiply",
    )  # fmt: skip
    sweep.add_argument("--seeds", type=int, metavar="N", help="seeds per grid point: seed, seed+1, ... (default 1)")
    cache = parser.add_argument_group("compilation cache (a second run of the same program skips compiling)")
    cache.add_argument(
        "--compile-cache", metavar="DIR",
        help="JAX's persistent compilation cache directory (default $JAX_COMPILATION_CACHE_DIR, else "
        "~/.cache/mjx_tecrl/xla)",
    )  # fmt: skip
    cache.add_argument("--no-compile-cache", action="store_true", help="compile every program afresh")
    dist = parser.add_argument_group("several hosts (jax.distributed; every process runs the same command)")
    dist.add_argument("--coordinator", metavar="HOST:PORT", help="address of process 0's coordinator")
    dist.add_argument("--num-processes", type=int, metavar="N", help="processes in all")
    dist.add_argument("--process-id", type=int, metavar="I", help="this process's index, 0 to N-1")
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


NON_CONFIG_FLAGS = ("list_envs", "sweep", "seeds", "coordinator", "num_processes", "process_id", "compile_cache",
                    "no_compile_cache", "config", "print_config")  # fmt: skip


@dataclass(frozen=True)
class Args:
    overrides: dict[str, Any]  # Config field overrides
    list_envs: bool = False
    sweep: tuple[str, ...] = ()
    seeds: int | None = None
    coordinator: str | None = None
    num_processes: int | None = None
    process_id: int | None = None
    compile_cache: str | None = None
    no_compile_cache: bool = False
    config: str | None = None
    print_config: bool = False


def parse(argv: list[str] | None = None) -> Args:
    ns = vars(build_parser().parse_args(argv))
    extra = {k: ns.pop(k) for k in NON_CONFIG_FLAGS if k in ns}
    extra["sweep"] = tuple(extra.get("sweep") or ())
    extra["list_envs"] = bool(extra.get("list_envs", False))
    extra["no_compile_cache"] = bool(extra.get("no_compile_cache", False))
    extra["print_config"] = bool(extra.get("print_config", False))
    return Args(ns, **extra)


def parse_overrides(argv: list[str] | None = None) -> tuple[dict[str, Any], bool]:
    """The flags the user gave, as Config field overrides, and whether --list-envs was asked."""
    args = parse(argv)
    return args.overrides, args.list_envs


def init_distributed(args: Args) -> None:
    """Join the multi-process runtime when --coordinator is given (CPU collectives through gloo)."""
    given = [f for f in ("coordinator", "num_processes", "process_id") if getattr(args, f) is not None]
    if not given:
        return
    if len(given) < 3:
        fail("--coordinator, --num-processes and --process-id go together; give all three")
    if args.num_processes < 1 or not 0 <= args.process_id < args.num_processes:
        fail(f"--process-id {args.process_id} must lie in [0, --num-processes {args.num_processes})")
    host, _, port = args.coordinator.rpartition(":")
    if not host or not port.isdigit():
        fail(f"--coordinator {args.coordinator!r} must look like HOST:PORT")
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(args.coordinator, args.num_processes, args.process_id)


def list_envs_table() -> str:
    """Every name --env accepts: the Gymnasium tasks with sizes, control timestep, frame skip and source; brax's
    versions (brax:<name>); tasks registered in this process; and how to name one's own."""
    from mjx_tecrl.envs import registry

    rows = [("name", "obs", "act", "dt", "frame_skip", "time_limit", "rho (tuned)", "source")]
    for name in registry.bare_names():
        spec = registry.spec(name)
        d = spec.describe()
        sizes = (str(d["observation_size"]), str(d["action_size"]), f"{d['dt']:g}", str(d["frame_skip"]))
        limit, rho = str(spec.tuned.get("episode_length", 1000)), str(spec.tuned.get("rho", 1.0))
        rows.append((name, *sizes, limit, rho, d["source"]))
    for name in registry.user_names():
        spec = registry.spec(name)
        rows.append((name, "", "", "", "", str(spec.tuned.get("episode_length", 1000)),
                     str(spec.tuned.get("rho", 1.0)), spec.source))  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    braxes = [n for n in registry.list_envs() if n.startswith("brax:")]
    lines += [
        "",
        f"brax:<name>: brax's MJX version of each task above ({len(braxes)} names: {', '.join(braxes)}); "
        "its own observations, rewards and solver settings",
        "package.module:factory: your own task (docs/envs.md, 'Your own task'), e.g. examples.point_mass:make_env",
    ]
    from mjx_tecrl.envs import playground

    found = playground.names()
    lines.append(
        f"playground:<Name>: MuJoCo Playground's tasks ({len(found)}: {', '.join(found)})"
        if found
        else f"playground:<Name>: MuJoCo Playground's tasks, with the playground extra ({playground.INSTALL_HINT})"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.list_envs:
        print(list_envs_table())
        return 0
    from mjx_tecrl.run import NonFiniteError, run
    from mjx_tecrl.rundir import prepare
    from mjx_tecrl.sweep import parse_sweep

    try:
        sweep = parse_sweep(args.sweep, args.seeds)
    except ConfigError as e:
        fail(str(e))
    try:
        overrides = {**(load_config_file(args.config) if args.config else {}), **args.overrides}
    except ConfigError as e:
        fail(str(e))
    if not args.print_config:
        init_distributed(args)
    try:
        plan = prepare(overrides, sweep)
    except ConfigError as e:
        fail(str(e))
    if args.print_config:
        print(json.dumps(plan.config.to_dict(), indent=2, sort_keys=True))
        return 0
    # after the checks of the input (bad input writes nothing), before anything is compiled
    compile_cache.enable(compile_cache.resolve(args.compile_cache, enabled=not args.no_compile_cache))
    interrupt.set_run_dir(plan.run_dir)  # a Ctrl-C before training tells the user to --resume it
    if args.num_processes and args.num_processes > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices("mjx_tecrl: prepared")  # nobody writes before all have checked
    from mjx_tecrl.checkpoint import CheckpointError, CheckpointWriteError

    try:
        summary = run(plan)
    except ConfigError as e:  # e.g. a state too large for the memory: found before anything is written
        fail(str(e))
    except CheckpointError as e:  # e.g. a checkpoint of another structure: refused, nothing written
        fail(f"--resume {plan.run_dir!r}: {e}")
    except NonFiniteError as e:
        print(f"train.py: stopped: {e}", file=sys.stderr)
        return 3
    except CheckpointWriteError as e:  # e.g. a full disk: the previous checkpoint is left as it was
        print(f"train.py: stopped: {e}", file=sys.stderr)
        return 4
    return 130 if summary.get("interrupted") else 0
