"""Shared helpers of the bench/ scripts: machine description, side-by-side timing, tables, JSON.

Every measurement alternates its cases round-robin (case A, case B, ..., then again), so that all cases
see the same machine load; the figures reported are medians over the repeats. Timed calls are AOT-compiled
functions whose outputs are blocked on (`jax.block_until_ready`), so no compile and no asynchronous dispatch
hides in a timing.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import importlib.metadata
import io
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


# --- command line ------------------------------------------------------------------------------------
def int_list(text: str, minimum: int = 1) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers") from None
    if not values or any(v < minimum for v in values):
        what = "positive integers" if minimum == 1 else f"integers >= {minimum}"
        raise argparse.ArgumentTypeError(f"{text!r} must list one or more {what}")
    return values


def seed_list(text: str) -> list[int]:
    """Seeds: non-negative integers (0 is a seed, unlike a size)."""
    return int_list(text, minimum=0)


def str_list(text: str) -> list[str]:
    values = [v.strip() for v in text.split(",") if v.strip()]
    if not values:
        raise argparse.ArgumentTypeError(f"{text!r} must list one or more names")
    return values


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--repeats", type=int, default=5, help="timed repeats per case (the median is reported)")
    p.add_argument("--quick", action="store_true", help="small sizes that finish in about a minute on a CPU")
    p.add_argument("--out", default="", help="JSON output path (default bench/results/<script>[_quick]_<backend>.json)")
    return p


def parse(p: argparse.ArgumentParser, quick_defaults: dict[str, Any], argv: Sequence[str] | None = None):
    """Parse; with --quick, flags the user did not give take `quick_defaults`. Bad values exit 2."""
    args = p.parse_args(argv)
    if args.quick:
        given = {a.split("=")[0] for a in (argv if argv is not None else sys.argv[1:]) if a.startswith("--")}
        for name, value in quick_defaults.items():
            if "--" + name.replace("_", "-") not in given:
                setattr(args, name, value)
    if args.repeats <= 0:
        p.error(f"--repeats {args.repeats} must be a positive integer")
    return args


def sim_parser(description: str, tasks: str, envs: str, iters: int) -> argparse.ArgumentParser:
    """The parser of the benches that time the simulation alone: --tasks, --envs, --iters, --episode-length."""
    p = parser(description)
    p.add_argument("--tasks", type=str_list, default=tasks)
    p.add_argument("--envs", type=int_list, default=envs, help="num_envs values")
    p.add_argument("--iters", type=int, default=iters, help="iterations (steps of every env) per timed call")
    p.add_argument("--episode-length", type=int, default=1000)
    return p


def largest_difference(a, b) -> float:
    """The largest absolute difference between two pytrees' leaves (0: the same numbers); a NaN against a number
    counts 1 per such element, so NaNs are not hidden."""
    worst = 0.0
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        if x.size:
            worst = max(worst, float(np.nanmax(np.abs(x - y), initial=0.0)), float(np.sum(np.isnan(x) != np.isnan(y))))
    return worst


def check_sim_args(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    check_tasks(p, args.tasks)
    if args.iters <= 0:
        p.error(f"--iters {args.iters} must be a positive integer")


def parse_task_defaults(description: str, quick_defaults: dict[str, Any], argv: Sequence[str] | None = None):
    """The parser and flags of the benches that measure tasks at their defaults (`--tasks`, `--num-envs` 0: the
    task's), parsed and checked, with the persistent compilation cache off (they time compiles)."""
    p = parser(description)
    p.add_argument("--tasks", type=str_list, default="inverted_pendulum,hopper")
    p.add_argument("--num-envs", type=int, default=0, help="environments (default: the task's)")
    args = parse(p, {"tasks": ["inverted_pendulum"], "num_envs": 4, **quick_defaults}, argv)
    check_tasks(p, args.tasks)
    if args.num_envs < 0:
        p.error(f"--num-envs {args.num_envs} must be a positive integer (0: the task's)")
    jax.config.update("jax_enable_compilation_cache", False)
    return p, args


def check_tasks(p: argparse.ArgumentParser, tasks: Sequence[str]) -> None:
    from mjx_tecrl.envs import registry

    for t in tasks:
        if t not in registry.list_envs():
            p.error(f"--tasks: unknown task {t!r}; known: {', '.join(registry.bare_names())}")


def check_algos(p: argparse.ArgumentParser, algos: Sequence[str]) -> None:
    from mjx_tecrl.config import ALGOS

    for a in algos:
        if a not in ALGOS:
            p.error(f"--algos: unknown algo {a!r}; allowed: {', '.join(ALGOS)}")


def config_or_exit(p: argparse.ArgumentParser, updates_per_iter: int | None = None, **overrides: Any):
    """`make_config(**overrides)`, validated; a bad value is a one-line argparse error (exit 2).

    `updates_per_iter`, the benches' size (gradient updates per iteration whatever num_envs), becomes the
    config's replay ratio `updates_per_step = updates_per_iter / num_envs`.
    """
    from mjx_tecrl.envs import registry

    from mjx_tecrl.config import ConfigError, make_config, validate

    try:
        if updates_per_iter is not None:
            num_envs = overrides.get("num_envs") or make_config(**overrides).num_envs
            overrides["updates_per_step"] = updates_per_iter / num_envs
        config = make_config(**overrides)
        validate(config, known_envs=registry.list_envs(), device_count=1)
    except ConfigError as e:
        p.error(str(e))
    return config


# --- environments and the library's training functions -------------------------------------------------
@functools.cache
def env(task: str):
    """The registry env for `task`, built once per process (building one traces an abstract reset)."""
    from mjx_tecrl.envs import registry

    with contextlib.redirect_stdout(io.StringIO()):  # mujoco.mjx's "Failed to import warp" line
        return registry.make(task)


def train_fns(config):
    from mjx_tecrl.loop import make_train

    return make_train(config, env(config.env))


def copy_tree(tree):
    """A copy that shares no buffer with `tree` (so that donating one leaves the other valid)."""
    return jax.tree.map(jnp.copy, tree)


def warm_state(fns, seed: int = 0):
    """A training state after the random-action warm-up (the replay buffer holds data): `fns.warmup`, the chunk in
    its warm mode compiled as a program of its own (run.py runs it in the training chunk's program)."""
    ts = fns.init(jax.random.PRNGKey(seed))
    if fns.warmup_iters:
        warmup = jax.jit(fns.warmup, donate_argnums=0).lower(ts).compile()
        ts, _ = warmup(ts)
    return jax.block_until_ready(ts)


def learner_and_replay(fns, seed: int = 0):
    """A fresh learner state and a replay buffer holding `batch_size` transitions of random numbers (the
    learner's cost does not depend on the values), built without stepping any env."""
    from mjx_tecrl import replay as replay_lib
    from mjx_tecrl.types import Transition

    c, e = fns.config, fns.env
    k_learner, k_data = jax.random.split(jax.random.PRNGKey(seed))
    learner = jax.jit(fns.learner.init, static_argnums=1)(k_learner, e.observation_size, c.hyperparams())
    n = c.num_envs
    replay = replay_lib.init(c.buffer_capacity, e.observation_size, e.action_size)
    ks = iter(jax.random.split(k_data, 6 * (-(-c.batch_size // n))))
    for _ in range(-(-c.batch_size // n)):
        rows = Transition(
            obs=jax.random.normal(next(ks), (n, e.observation_size)),
            action=jax.random.uniform(next(ks), (n, e.action_size), minval=-1.0, maxval=1.0),
            reward=jax.random.normal(next(ks), (n,)),
            next_obs=jax.random.normal(next(ks), (n, e.observation_size)),
            terminated=(jax.random.uniform(next(ks), (n,)) < 0.01).astype(jnp.float32),
            truncated=(jax.random.uniform(next(ks), (n,)) < 0.001).astype(jnp.float32),
        )
        replay = replay_lib.add(replay, rows)
    return jax.block_until_ready((learner, replay))


def compile_chunk(fns, ts):
    """The pipeline chunk exactly as run.py compiles it (AOT, training state donated, the iteration count and the
    warm-up mode traced). Called with the state alone it runs a training chunk; `(ts, n, True)` warm-up iterations."""
    compiled = jax.jit(fns.run_chunk, donate_argnums=0).lower(ts, np.int32(0), np.bool_(False)).compile()
    return lambda ts, n=fns.chunk_iters, warm=False: compiled(ts, np.int32(n), np.bool_(warm))


def sim_chunk_fn(environment, num_envs: int, iters: int, episode_length: int):
    """`iters` vmapped env steps of `num_envs` envs with uniform random actions (rollout.step: auto-reset
    included), as one scan; env state donated. Returns (env state, episodes finished)."""
    from mjx_tecrl import rollout

    def chunk(env_state, key):
        def body(es, k):
            k_act, k_reset = jax.random.split(k)
            action = jax.random.uniform(k_act, (num_envs, environment.action_size), minval=-1.0, maxval=1.0)
            es, _, stats = rollout.step(environment, es, action, k_reset, episode_length)
            return es, stats.count

        es, counts = jax.lax.scan(body, env_state, jax.random.split(key, iters))
        return es, jnp.sum(counts)

    return jax.jit(chunk, donate_argnums=0)


@contextlib.contextmanager
def attribute(owner: Any, name: str, value: Any):
    """`owner.name = value` for the length of the block (a module's switch, read while tracing)."""
    previous = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, previous)


def compare_sim_variants(args, report: Report, variants: dict[str, Callable[[], Any]], baseline: str) -> None:
    """The simulation alone (`sim_chunk_fn`) under each variant (name -> a context manager that sets the switch
    it traces with), for each of args.tasks and args.envs: all of a size compiled in one process and run from the
    same state with the same key (each one's largest difference from `baseline`'s outputs: 0 if the numbers are
    the same), then timed round-robin. One row per task and size; the JSON is written after every task, so a run
    stopped at a deadline keeps the tasks it finished."""
    for task in args.tasks:
        environment = env(task)
        cases, compile_s, difference = {}, {}, {}
        for n in args.envs:
            compiled = {}
            for name, switch in variants.items():
                t0 = time.perf_counter()
                with switch():
                    fn = sim_chunk_fn(environment, n, args.iters, args.episode_length)
                    compiled[name] = fn.lower(sim_reset(environment, n), jax.random.PRNGKey(0)).compile()
                compile_s[name, n] = time.perf_counter() - t0
                print(f"{task} {n} envs, {name}: compiled in {compile_s[name, n]:.0f} s", flush=True)
            outs = {name: fn(sim_reset(environment, n), jax.random.PRNGKey(1)) for name, fn in compiled.items()}
            difference[n] = {name: largest_difference(out, outs[baseline]) for name, out in outs.items()}
            for name in variants:
                cases[name, n] = Case(compiled[name], sim_reset(environment, n), key_seq(n))
        times = alternate(cases, args.repeats)
        del cases
        for n in args.envs:
            rate = {name: n * args.iters / median(times[name, n]) for name in variants}
            report.add(
                task=task,
                num_envs=n,
                iters=args.iters,
                env_steps_per_s=rate,
                times_s={name: times[name, n] for name in variants},
                compile_s={name: compile_s[name, n] for name in variants},
                speedup={name: rate[name] / rate[baseline] for name in variants},
                max_abs_difference=difference[n],
            )
        report.write()


def sim_reset(environment, num_envs: int, seed: int = 0):
    from mjx_tecrl import rollout

    return jax.jit(lambda k: rollout.reset(environment, k, num_envs))(jax.random.PRNGKey(seed))


def learner_chunk_fn(fns, iters: int):
    """`iters` iterations of the pipeline's own update schedule (`updates_per_iter` learner updates each,
    batches sampled from the replay buffer) without the env: the learner alone. Learner state donated."""

    def chunk(learner, replay, key):
        def body(ls, k):
            return fns._updates(ls, replay, k)  # the exact schedule run_chunk uses (loop.py)

        ls, metrics = jax.lax.scan(body, learner, jax.random.split(key, iters))
        return ls, jax.tree.map(jnp.mean, metrics)

    return jax.jit(chunk, donate_argnums=0)


# --- timing -----------------------------------------------------------------------------------------
class Case:
    """A stateful timed call: `step()` runs `fn(state, *extra)` once, keeps the new state, returns seconds."""

    def __init__(self, fn: Callable, state: Any, *extra: Any, state_out: Callable[[Any], Any] = lambda out: out[0]):
        self.fn, self.state, self.extra, self.state_out = fn, state, extra, state_out
        self._calls = 0

    def step(self) -> float:
        extra = [e(self._calls) if callable(e) else e for e in self.extra]
        t0 = time.perf_counter()
        out = self.fn(self.state, *extra)
        jax.block_until_ready(out)
        dt = time.perf_counter() - t0
        self.state = self.state_out(out)
        self._calls += 1
        return dt


def key_seq(seed: int = 1):
    """A callable for Case extras: a fresh PRNG key per call."""
    return lambda i: jax.random.fold_in(jax.random.PRNGKey(seed), i)


def alternate(cases: dict[str, Case], repeats: int, warm: int = 1) -> dict[str, list[float]]:
    """Round-robin timing: `warm` untimed calls of each case, then `repeats` rounds of one call per case."""
    for _ in range(warm):
        for case in cases.values():
            case.step()
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, case in cases.items():
            times[name].append(case.step())
    return times


def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs))


class CompileClock:
    """Seconds JAX spent tracing, lowering and compiling while active (jax.monitoring events); works for
    code we do not control (brax's trainer) as well as ours."""

    EVENTS = (
        "/jax/core/compile/jaxpr_trace_duration",
        "/jax/core/compile/jaxpr_to_mlir_module_duration",
        "/jax/core/compile/backend_compile_duration",
    )

    def __init__(self):
        self.seconds = 0.0

    def _listen(self, event: str, duration: float, **_: Any) -> None:
        if event in self.EVENTS:
            self.seconds += duration

    def __enter__(self):
        jax.monitoring.register_event_duration_secs_listener(self._listen)
        return self

    def __exit__(self, *exc):
        jax.monitoring.unregister_event_duration_listener(self._listen)


def memory_of(compiled) -> dict[str, int | None]:
    """Bytes a compiled executable needs (XLA's memory analysis; available on CPU and GPU)."""
    try:
        m = compiled.memory_analysis()
    except Exception:  # noqa: BLE001 - not every backend implements it
        m = None
    if m is None:
        return {"argument_bytes": None, "output_bytes": None, "temp_bytes": None, "total_bytes": None}
    arg, out, temp = m.argument_size_in_bytes, m.output_size_in_bytes, m.temp_size_in_bytes
    alias = getattr(m, "alias_size_in_bytes", 0)
    return {"argument_bytes": arg, "output_bytes": out, "temp_bytes": temp, "total_bytes": arg + out - alias + temp}


def device_peak_bytes() -> int | None:
    """The device allocator's peak so far (GPU/TPU); None where the backend keeps no statistics (CPU)."""
    from mjx_tecrl.memory import device_peak_bytes as peak

    return peak()


def max_rss_bytes() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# --- machine and output --------------------------------------------------------------------------------
def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(pkg: str) -> str | None:
    try:
        return importlib.metadata.version(pkg)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git() -> dict[str, Any]:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True, timeout=10)
        return {"commit": head.stdout.strip() or None, "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def machine() -> dict[str, Any]:
    devices = jax.local_devices()
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count()
    mem_gib = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        with open("/proc/meminfo") as f:
            mem_gib = round(int(f.readline().split()[1]) / 2**20, 1)
    return {
        "cpu_model": _cpu_model(),
        "cpu_cores": os.cpu_count(),
        "cpu_cores_usable": affinity,
        "memory_gib": mem_gib,
        "backend": jax.default_backend(),
        "devices": sorted({d.device_kind for d in devices}),
        "device_count": len(devices),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jaxlib": _version("jaxlib"),
        "mujoco_mjx": _version("mujoco-mjx"),
        "brax": _version("brax"),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "git": _git(),
    }


def describe(m: dict[str, Any]) -> str:
    return (
        f"{m['cpu_model']}, {m['cpu_cores']} cores ({m['cpu_cores_usable']} usable), JAX {m['jax']} "
        f"({m['backend']}: {', '.join(m['devices'])}), load average {os.getloadavg()[0]:.2f}"
    )


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A markdown table (pasteable into docs/performance.md)."""

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            if v != v:
                return "n/a"
            return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}" if abs(v) >= 0.01 or v == 0 else f"{v:.2e}"
        return "n/a" if v is None else str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


class Report:
    """Collects the run's settings, machine, load and rows; `write()` saves JSON and returns the path."""

    def __init__(self, script: str, args: argparse.Namespace):
        self.script = script
        self.args = args
        self.machine = machine()
        self.load_start = os.getloadavg()
        self.t_start = time.time()
        self.rows: list[dict[str, Any]] = []
        self.extra: dict[str, Any] = {}
        print(f"{script}: {describe(self.machine)}", flush=True)

    def add(self, **row: Any) -> dict[str, Any]:
        row["load_avg_1m"] = os.getloadavg()[0]
        self.rows.append(row)
        return row

    def write(self) -> str:
        from mjx_tecrl.logging import write_json

        args = {k: v for k, v in vars(self.args).items()}
        path = self.args.out or os.path.join(
            RESULTS_DIR, f"{self.script}{'_quick' if self.args.quick else ''}_{self.machine['backend']}.json"
        )
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        write_json(
            path,
            {
                "script": self.script,
                "command": " ".join(["python"] + [os.path.relpath(sys.argv[0])] + sys.argv[1:]),
                "args": args,
                "machine": self.machine,
                "load_avg_start": list(self.load_start),
                "load_avg_end": list(os.getloadavg()),
                "wall_s": time.time() - self.t_start,
                "time": time.strftime("%Y-%m-%d %H:%M:%S"),
                "rows": [_plain(r) for r in self.rows],
                **_plain(self.extra),
            },
        )
        print(f"wrote {path} ({time.time() - self.t_start:.0f}s, load average now {os.getloadavg()[0]:.2f})")
        return path


def _plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _plain(dataclasses.asdict(obj))
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if hasattr(obj, "item") and getattr(obj, "ndim", 1) == 0:
        return obj.item()
    return obj
