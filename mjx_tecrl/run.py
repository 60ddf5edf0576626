"""The one host loop: resolve the run directory, compile, run chunks, evaluate, log, checkpoint.

Everything here is I/O at the edge; the compiled chunk (`loop.TrainFns.run_chunk`) never calls back.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import os
import signal
import sys
import time
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mjx_tecrl import checkpoint, export, health, interrupt, memory, policy, rundir
from mjx_tecrl import sweep as sweep_lib
from mjx_tecrl.config import Config, ConfigError, make_config, validate
from mjx_tecrl.logging import RunLogger, format_line, write_json
from mjx_tecrl.sweep import SweepSpec

# Flags that may differ from the saved config when resuming; anything else must match.
RESUMABLE_OVERRIDES = ("total_steps", "progress", "checkpoint_every", "checkpoint_buffer", "checkpoint_buffer_every",
                       "keep_checkpoints", "resume", "out", "track",
                       "wandb_project")  # fmt: skip


class NonFiniteError(RuntimeError):
    """Training produced NaN or inf; the last good checkpoint is left as it was."""


@dataclass(frozen=True)
class RunPlan:
    config: Config
    run_dir: str
    resume: bool  # continue the run already in run_dir (its config.json and sweep.json are kept)
    sweep: SweepSpec | None = None  # None: a single run
    members: tuple[dict[str, Any], ...] = ()  # the sweep's members (member, seed, hyperparams)
    restart: bool = False  # resume of a run stopped before its first checkpoint: start it over from env step 0

    @property
    def is_sweep(self) -> bool:
        return self.sweep is not None


def prepare(overrides: dict[str, Any], sweep: SweepSpec | None = None) -> RunPlan:
    """Resolve flags into a validated config and run directory. Raises ConfigError; writes nothing.

    `sweep`: the grid of `--sweep`/`--seeds` (see `mjx_tecrl.sweep.parse_sweep`), None for a single run.
    """
    resume_dir = overrides.get("resume") or ""
    if resume_dir:
        return _prepare_resume(overrides, sweep, resume_dir)

    config = make_config(**overrides)
    _validate(config, sweep is not None)
    members: tuple[dict[str, Any], ...] = ()
    if sweep is not None:
        members = tuple(sweep_lib.check_members(config, sweep))
    _check_member_devices(len(members))
    tag = "sweep" if sweep is not None else f"s{config.seed}"
    run_dir = config.out or os.path.join("runs", f"{config.env}-{config.algo}-{tag}-{time.strftime('%Y%m%d-%H%M%S')}")
    if rundir.holds_run(run_dir):
        raise ConfigError(
            f"--out {run_dir!r} already holds a run; continue it with --resume {run_dir} (which starts it over "
            "if it stopped before its first checkpoint), or choose another --out"
        )
    if os.path.exists(run_dir) and not os.path.isdir(run_dir):
        raise ConfigError(f"--out {run_dir!r} exists and is not a directory")
    return RunPlan(dataclasses.replace(config, out=run_dir), run_dir, False, sweep, members)


def _prepare_resume(overrides: dict[str, Any], sweep: SweepSpec | None, resume_dir: str) -> RunPlan:
    where = f"--resume {resume_dir!r}"
    saved = rundir.read_config(resume_dir, where)
    ckpt_dir = rundir.checkpoints_dir(resume_dir)
    # No checkpoint yet: the run was stopped before its first one, so it starts over. A checkpoint that is
    # there but unreadable is refused (starting over would overwrite what may be recoverable).
    restart = not os.path.exists(os.path.join(ckpt_dir, checkpoint.LATEST))
    if not restart:
        try:
            checkpoint.load_meta(ckpt_dir)
        except checkpoint.CheckpointError as e:
            raise ConfigError(f"{where}: {e}") from None
    for name, value in overrides.items():
        if name not in RESUMABLE_OVERRIDES and getattr(saved, name) != value:
            raise ConfigError(
                f"--{name.replace('_', '-')} {value!r} differs from the resumed run's "
                f"{getattr(saved, name)!r}; only {', '.join(RESUMABLE_OVERRIDES[:4])} may change"
            )
    out = overrides.get("out") or resume_dir
    if os.path.abspath(out) != os.path.abspath(resume_dir):
        raise ConfigError(f"--out {out!r} differs from --resume {resume_dir!r}")
    saved_sweep = rundir.read_sweep(resume_dir)
    saved_spec = SweepSpec.from_dict(saved_sweep) if saved_sweep is not None else None
    if sweep is not None and sweep != saved_spec:
        raise ConfigError(
            f"--sweep/--seeds differ from the resumed run's grid; leave them out to resume {resume_dir!r}"
        )
    allowed = {k: v for k, v in overrides.items() if k in RESUMABLE_OVERRIDES}
    config = dataclasses.replace(saved, **{**allowed, "out": resume_dir, "resume": resume_dir})
    _validate(config, saved_sweep is not None)
    members = tuple(saved_sweep["members"]) if saved_sweep is not None else ()
    _check_member_devices(len(members))
    return RunPlan(config, resume_dir, True, saved_spec, members, restart=restart)


def _check_member_devices(n_members: int) -> None:
    """Across several processes every device must hold the same number of sweep members."""
    n_dev = jax.device_count()
    if jax.process_count() > 1 and not n_members:
        raise ConfigError(
            f"--num-processes {jax.process_count()} splits the members of a sweep over the processes; "
            "give --sweep and/or --seeds (a single run uses the devices of one process)"
        )
    if jax.process_count() > 1 and n_members % n_dev:
        raise ConfigError(
            f"--sweep/--seeds give {n_members} members, which do not split evenly over the {n_dev} devices "
            f"of {jax.process_count()} processes; use a multiple of {n_dev}"
        )


def _validate(config: Config, is_sweep: bool = False) -> None:
    from mjx_tecrl.envs import registry

    # A single run shards its environments over the local devices; a sweep shards its members instead.
    devices = 1 if is_sweep else jax.local_device_count()
    validate(config, known_envs=registry.list_envs(), device_count=devices)
    if config.track and importlib.util.find_spec("wandb") is None:
        raise ConfigError("--track needs Weights & Biases: pip install 'mjx_tecrl[wandb]'")


def device_description() -> str:
    devs = jax.local_devices()
    kinds = sorted({d.device_kind for d in devs})
    return f"JAX backend: {jax.default_backend()} ({len(devs)} device(s): {', '.join(kinds)})"


class _StopFlag:
    """SIGINT sets a flag; the loop saves a checkpoint after the current chunk and exits cleanly."""

    def __init__(self):
        self.stop = False
        self._previous = None

    def __enter__(self):
        def handler(signum, frame):
            if self.stop:  # a second Ctrl-C: give up at once
                raise KeyboardInterrupt
            self.stop = True
            print("\ninterrupt: saving a checkpoint after this chunk (Ctrl-C again to abort)", flush=True)

        try:
            previous = signal.signal(signal.SIGINT, handler)
        except ValueError:  # not in the main thread
            self._previous = None
        else:  # train.py's guard of the compile (mjx_tecrl.interrupt) hands Ctrl-C over to this flag
            self._previous = interrupt.handover(previous)
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def run(plan: RunPlan, out=sys.stdout) -> dict[str, Any]:
    """Train according to `plan` (one run, or every member of a sweep at once); returns the summary.

    The summary is also written to summary.json (a sweep's: one per member, plus sweep.csv and sweep.png).
    With several processes (`jax.distributed`), all compute and process 0 alone writes.
    Raises ConfigError, before anything is compiled or written, if the state would not fit in memory or another
    process is training the run directory.
    """
    held: list[int] = []  # the run directory's lock (`_lock_run_dir`), taken once the directory exists
    try:
        return _run(plan, out, held)
    finally:
        for fd in held:
            os.close(fd)  # releases the lock


def _lock_run_dir(run_dir: str) -> int:
    """An exclusive flock on the run directory itself (no file added to it), held until its descriptor is closed;
    the kernel drops it when the process dies, so a killed run leaves nothing behind. ConfigError when another
    process holds it."""
    import fcntl

    fd = os.open(run_dir, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise ConfigError(
            f"{run_dir!r} is being trained by another process (it holds the directory's lock); wait for it to end "
            "or stop it, or use another --out"
        ) from None
    return fd


def _run(plan: RunPlan, out, held: list[int]) -> dict[str, Any]:
    from mjx_tecrl.envs import registry
    from mjx_tecrl.loop import make_train

    config, run_dir = plan.config, plan.run_dir
    env = registry.make(config.env, physics=config.physics)  # a user's task is checked here (EnvFactoryError)
    if config.randomize:
        from mjx_tecrl.envs.perturb import NotPerturbable, PerturbedEnv

        try:
            PerturbedEnv(env)
        except NotPerturbable as e:
            raise ConfigError(f"--randomize {config.randomize!r}: {e}") from None
    memory.check(config, env, members=max(len(plan.members), 1))  # before anything is compiled or written
    writer = jax.process_index() == 0
    if not writer:
        out = open(os.devnull, "w")  # noqa: SIM115 - the other processes compute and stay quiet
    print(device_description(), file=out, flush=True)
    upi = config.updates_per_iter
    if abs(upi / config.num_envs - config.updates_per_step) > 0.01 * config.updates_per_step:
        print(
            f"note: --updates-per-step {config.updates_per_step:g} at --num-envs {config.num_envs} runs {upi} "
            f"updates per iteration ({upi / config.num_envs:g} per env step: whole blocks of --policy-delay "
            f"{config.policy_delay})",
            file=out,
        )
    if config.preset == "parallel":
        print(
            f"preset parallel: batch {config.batch_size}, {upi} updates per iteration of {config.num_envs} envs, "
            f"{config.n_step}-step targets, {config.buffer_capacity // config.num_envs} replay rows per env",
            file=out,
        )
    if jax.default_backend() == "gpu" and config.num_envs < registry.PARALLEL_MIN_ENVS:
        print(
            f"note: on a GPU use many more environments, e.g. --num-envs 4096 (the parallel preset) "
            f"(now --num-envs {config.num_envs})",
            file=out,
        )
    ckpt_dir = rundir.checkpoints_dir(run_dir)
    if writer:
        os.makedirs(run_dir, exist_ok=True)
        held.append(_lock_run_dir(run_dir))  # before anything in it is read or written
        if not plan.resume:  # sweep.json first: a config.json is what marks the directory as holding a run
            if plan.is_sweep:
                sweep_doc = {**plan.sweep.to_dict(), "members": list(plan.members)}
                write_json(os.path.join(run_dir, rundir.SWEEP_FILE), sweep_doc)
            write_json(os.path.join(run_dir, rundir.CONFIG_FILE), config.to_dict())

    fns = make_train(config, env)
    prog = _Program.build(plan, fns)
    if prog.note:
        print(prog.note, file=out, flush=True)
    n_members = len(prog.members)
    t_start = time.time()
    ts = prog.init()
    meta: dict[str, Any] = {"env_steps": 0, "best_eval_return": -math.inf, "wall_time_s": 0.0, "has_buffer": True}
    from_checkpoint = plan.resume and not plan.restart
    saver = checkpoint.Checkpointer(ckpt_dir, keep=config.keep_checkpoints, buffer_every=config.checkpoint_buffer_every)
    if plan.resume and writer:
        saver.recover()  # a kill mid-save leaves a temp file, or a replay file latest.ckpt does not name
    if plan.restart:
        print(
            f"no checkpoint in {run_dir} yet (it stopped before its first): starting its run over from env step 0 "
            "with its saved config",
            file=out,
            flush=True,
        )
    replay_steps = None
    if from_checkpoint:  # no buffer saved: the fresh empty one is kept and warmed up again below
        restored, meta, replay_steps = checkpoint.restore_run(ckpt_dir, ts)
        ts = prog.place(restored)
        print(f"resumed {run_dir} at env step {meta['env_steps']}", file=out, flush=True)
        if replay_steps is not None and replay_steps != meta["env_steps"]:
            print(
                f"note: the replay buffer was saved at env step {replay_steps} (--checkpoint-buffer-every "
                f"{config.checkpoint_buffer_every}); training goes on with it, so this resume is not exact",
                file=out,
                flush=True,
            )

    # Compile once, ahead of time: compile time is reported apart, and no chunk can retrace.
    t_compile = time.time()
    chunk_fn = prog.jit(prog.chunk, donate=True).lower(ts, np.int32(fns.chunk_iters)).compile()
    eval_fn = prog.jit(prog.evaluate).lower(ts.learner, prog.eval_keys(0)).compile()
    need_warmup = replay_steps is None and fns.warmup_iters > 0
    warmup_fn = prog.jit(prog.warmup, donate=True).lower(ts).compile() if need_warmup else None
    compile_time = time.time() - t_compile
    print(f"compiled in {compile_time:.1f}s", file=out, flush=True)

    # A resume drops the rows logged after its checkpoint (a chunk the kill lost); a restart (env step 0) all.
    resume_step = int(meta["env_steps"]) if plan.resume else None
    hparams = [{**config.to_dict(), "seed": prog.seed(i), **prog.members[i].get("hyperparams", {})}
               for i in range(n_members)]  # fmt: skip
    members = [
        _MemberLog.open(
            prog.metrics_dir(i),
            writer,
            n_members <= MAX_TENSORBOARD_MEMBERS,
            resume_step,
            _wandb_init(config, run_dir, prog, i, hparams[i]),
        )  # fmt: skip
        for i in range(n_members)
    ]
    for i, m in enumerate(members):
        m.restore(meta, i)
        if m.logger is not None and not plan.resume:  # TensorBoard's HPARAMS view: the config, the member's values
            m.logger.hparams(hparams[i])
    if warmup_fn is not None:
        ts, _ = warmup_fn(ts)
    env_steps = prog.iteration(ts.iteration) * config.num_envs
    evals_done = int(meta.get("evals_done", 0))
    train_time, prior_wall = 0.0, float(meta.get("wall_time_s", 0.0))
    loop_start_steps = env_steps
    bar = _progress_bar(config, env_steps, out)
    interrupted = False
    best_mean = float(meta.get("best_mean_eval_return", -math.inf))  # best.ckpt's: the members' mean
    try:
        with _StopFlag() as stop:
            while env_steps < config.total_steps:
                t0 = time.time()
                chunk_start = env_steps
                # The last chunk runs only the iterations left: the run stops within one iteration of total_steps.
                left = -(-(config.total_steps - env_steps) // config.num_envs)
                chunk_iters = min(fns.chunk_iters, left)
                ts, metrics = chunk_fn(ts, np.int32(chunk_iters))
                metrics, nonfinite = _split_nonfinite(prog.to_host(metrics), n_members, plan.is_sweep)
                chunk_time = time.time() - t0
                train_time += chunk_time
                env_steps = prog.iteration(ts.iteration) * config.num_envs
                if nonfinite[0] and not plan.is_sweep:
                    raise NonFiniteError(_nonfinite_text(nonfinite[0], chunk_start, config, saver))
                evaluation = prog.to_host(eval_fn(ts.learner, prog.eval_keys(evals_done)))
                evals_done += 1
                sps = chunk_iters * config.num_envs / max(chunk_time, 1e-9)  # per member; the chunk alone, no eval
                wall = prior_wall + time.time() - t_start
                rows, improved = [], []
                for i, m in enumerate(members):
                    row = {k: float(v[i] if plan.is_sweep else v) for k, v in evaluation.items()}
                    row.update({k: float(v[i] if plan.is_sweep else v) for k, v in metrics.items()})
                    row["train/env_steps_per_second"] = sps
                    bad = sorted(k for k, v in row.items() if not math.isfinite(v))
                    if bad and not plan.is_sweep:
                        raise NonFiniteError(
                            f"non-finite {', '.join(bad)} in the chunk ending at env step {env_steps}; "
                            + _checkpoint_note(saver)
                        )
                    if (bad or nonfinite[i]) and m.diverged_at is None:
                        m.diverged_at = env_steps
                        what = (
                            health.nonfinite_message(nonfinite[i], chunk_start, config.num_envs)
                            if nonfinite[i]
                            else f"non-finite {', '.join(bad[:3])} by env step {env_steps}"
                        )
                        print(
                            f"member {i} ({prog.label(i)}) went {what}; it is marked diverged and the other "
                            "members go on",
                            file=out,
                            flush=True,
                        )
                    if m.log(row, env_steps, wall):
                        improved.append(i)
                    rows.append(row)
                if improved:  # policy_best.npz: every process gathers the learner, process 0 writes
                    _write_policies(prog, run_dir, config, env, ts, improved, writer, best_at=(env_steps, rows))
                _report(bar, out, env_steps, config.total_steps, _report_row(rows))
                last_chunk = env_steps >= config.total_steps
                final = stop.stop or last_chunk
                regular = final or (config.checkpoint_every and evals_done % config.checkpoint_every == 0)
                mean_return = _mean_return(rows)
                best = config.checkpoint_every > 0 and mean_return > best_mean
                if regular or best:
                    best_mean = max(best_mean, mean_return)
                    meta = _meta(config, env_steps, members, evals_done, prior_wall + time.time() - t_start, best_mean)
                    state = ts if regular and config.checkpoint_buffer else ts.replace(replay=None)
                    # every process takes part; process 0 writes, off the training path (a copy, not a view
                    # of device memory that the next chunk's donated state would overwrite), one write at a time
                    if writer:
                        saver.wait()
                    host_state = checkpoint.snapshot(prog.to_host(state), copy=jax.default_backend() == "cpu")
                    if writer:
                        saver.save(host_state, meta, regular=bool(regular), best=best, final=final)
                if stop.stop:
                    interrupted = True
                    break
    except BaseException:
        saver.join()  # a write in flight completes (it is atomic either way); its error yields to this one
        raise
    finally:
        if bar is not None:
            bar.close()
        for m in members:
            m.close()
    saver.wait()

    wall = prior_wall + time.time() - t_start
    gradient_steps = prog.iteration(ts.learner.step)
    common = {
        "env": config.env,
        "algo": config.algo,
        "env_steps": env_steps,
        "gradient_steps": gradient_steps,
        "updates_per_step": config.updates_per_iter / config.num_envs,  # as run (rounded to whole blocks)
        "wall_time_s": wall,
        "compile_time_s": compile_time,
        "train_time_s": train_time,
        "env_steps_per_second": (env_steps - loop_start_steps) / max(train_time, 1e-9),
        "interrupted": interrupted,
        "backend": jax.default_backend(),
        "device_peak_bytes": memory.device_peak_bytes(),  # None on a CPU
    }
    summaries = [
        {**common, "seed": prog.seed(i), "final_eval_return": m.last_return,
         "final_eval_return_last3": m.last_mean(3), "best_eval_return": m.best,
         "diverged_at_env_step": m.diverged_at, **({"member": i, "hyperparams": prog.members[i]["hyperparams"]}
                                                    if plan.is_sweep else {})}
        for i, m in enumerate(members)
    ]  # fmt: skip
    if writer:
        for i, s in enumerate(summaries):
            write_json(os.path.join(prog.metrics_dir(i), "summary.json"), s)
    _write_policies(prog, run_dir, config, env, ts, range(n_members), writer)
    if not plan.is_sweep:
        summary = summaries[0]
        del summary["diverged_at_env_step"]
        if writer:
            write_json(os.path.join(run_dir, "summary.json"), summary)
        best = summary["best_eval_return"]
        print(
            f"done: {env_steps} env steps, best eval return {best:.1f}, final {summary['final_eval_return']:.1f}, "
            f"{wall:.0f}s wall ({compile_time:.0f}s compile) -> {run_dir}",
            file=out,
            flush=True,
        )
        return summary
    summary = {**common, "members": n_members, "member_env_steps_per_second": common["env_steps_per_second"],
               "env_steps_per_second": common["env_steps_per_second"] * n_members}  # fmt: skip
    rows = _sweep_rows(prog, members, summaries, common["env_steps_per_second"])
    if writer:
        write_json(os.path.join(run_dir, "summary.json"), summary)
        sweep_lib.write_csv(os.path.join(run_dir, "sweep.csv"), rows)
        curves = [m.curve() for m in members]
        try:
            sweep_lib.plot(os.path.join(run_dir, "sweep.png"), curves, rows, plan.sweep.names)
        except ImportError:
            print("note: matplotlib is not installed, so sweep.png was not drawn", file=out)
    print(sweep_lib.group_table(rows, plan.sweep.names), file=out)
    print(
        f"done: {n_members} members x {env_steps} env steps, {summary['env_steps_per_second']:.0f} env steps/s "
        f"in all, {wall:.0f}s wall ({compile_time:.0f}s compile) -> {run_dir}",
        file=out,
        flush=True,
    )
    return summary


def _write_policies(prog, run_dir, config, env, ts, members, writer: bool, best_at=None) -> None:
    """The policy files (mjx_tecrl.export) of `members`: policy.npz, or with `best_at` (env steps, eval rows)
    policy_best.npz, the policy of the best evaluation so far. Every process gathers the learner; 0 writes."""
    learner = prog.to_host(ts.learner)
    if not writer:
        return
    for i in members:
        one = jax.tree.map(lambda x, i=i: x[i], learner) if prog.plan.is_sweep else learner
        info = {} if best_at is None else {"env_steps": best_at[0], "eval_return": best_at[1][i]["eval/episode_return"]}
        path = export.policy_path(
            run_dir, i if prog.plan.is_sweep else None, export.BEST_NAME if best_at else export.FILE_NAME
        )
        export.save(path, export.policy_arrays(config, env, one, i, prog.seed(i), info))


def _wandb_init(config: Config, run_dir: str, prog, member: int, hparams: dict[str, Any]) -> dict[str, Any] | None:
    """wandb.init's arguments for one member under --track (a sweep's members grouped by the sweep), else None."""
    if not config.track:
        return None
    name = os.path.basename(os.path.normpath(run_dir))
    if prog.plan.is_sweep:
        return {"project": config.wandb_project, "name": f"{name}/m{member:03d}", "group": name, "config": hparams}
    return {"project": config.wandb_project, "name": name, "config": hparams}


MAX_TENSORBOARD_MEMBERS = 256  # beyond this many members, only metrics.csv per member (file handles)


@dataclass
class _MemberLog:
    """Host-side record of one member (or the single run): loggers, best and last eval, learning curve."""

    logger: RunLogger | None
    best: float = -math.inf
    last_return: float = math.nan
    diverged_at: int | None = None
    steps: list[int] = dataclasses.field(default_factory=list)
    returns: list[float] = dataclasses.field(default_factory=list)

    @classmethod
    def open(cls, directory: str, writer: bool, tensorboard: bool, resume_step: int | None = None,
             track: dict[str, Any] | None = None) -> _MemberLog:  # fmt: skip
        if not writer:
            return cls(None)
        os.makedirs(directory, exist_ok=True)
        return cls(RunLogger(directory, tensorboard=tensorboard, resume_step=resume_step, track=track))

    def restore(self, meta: dict[str, Any], index: int) -> None:
        saved = meta.get("members")
        record = saved[index] if saved else meta
        self.best = float(record.get("best_eval_return", -math.inf) or -math.inf)
        self.diverged_at = record.get("diverged_at_env_step")
        if self.logger is not None and os.path.exists(self.logger.csv_path):  # the curve so far (resume)
            import csv

            with open(self.logger.csv_path) as f:
                for r in csv.DictReader(f):
                    self.steps.append(int(float(r["env_steps"])))
                    self.returns.append(float(r["eval/episode_return"]))

    def log(self, row: dict[str, float], env_steps: int, wall: float) -> bool:
        """Record one evaluation; returns whether it is the best so far."""
        ret = row["eval/episode_return"]
        self.last_return = ret
        improved = math.isfinite(ret) and ret > self.best
        if improved:
            self.best = ret
        self.steps.append(env_steps)
        self.returns.append(ret)
        if self.logger is not None:
            self.logger.scalars(row, env_steps)
            self.logger.csv_row({"env_steps": env_steps, "wall_time_s": wall, **row})
        return improved

    def last_mean(self, k: int) -> float:
        """Mean eval return of the last `k` evaluations (the score at a budget: issue 17 uses k = 3)."""
        return float(np.mean(self.returns[-k:])) if self.returns else math.nan

    def curve(self) -> dict[str, list]:
        return {"steps": self.steps, "returns": self.returns}

    def close(self) -> None:
        if self.logger is not None:
            self.logger.close()


class _Program:
    """How the state is laid out over devices and how the pure functions are lifted to it.

    Single run: the functions as they are; with several local devices the environment axis is sharded.
    Sweep: every function vmapped over a leading member axis, which is sharded over the devices (of all
    processes under `jax.distributed`).
    """

    def __init__(self, plan: RunPlan, fns, sharding, note: str = ""):
        self.plan, self.fns, self.sharding, self.note = plan, fns, sharding, note
        self.members = list(plan.members) if plan.is_sweep else [{"member": 0, "seed": plan.config.seed}]
        self._eval_base = [jax.random.PRNGKey(m["seed"] + EVAL_SEED_OFFSET) for m in self.members]

    @classmethod
    def build(cls, plan: RunPlan, fns) -> _Program:
        from jax.sharding import Mesh, NamedSharding
        from jax.sharding import PartitionSpec as P

        devices = jax.devices()
        if plan.is_sweep:
            n = len(plan.members)
            d = math.gcd(n, len(devices)) if jax.process_count() == 1 else len(devices)
            note = ""
            if d < len(devices):
                note = f"note: {n} members over {d} of {len(devices)} devices (use a multiple of {len(devices)})"
            mesh = Mesh(np.array(devices[:d]), ("members",))
            return cls(plan, fns, NamedSharding(mesh, P("members")), note)
        local = jax.local_devices()
        if len(local) > 1 and plan.config.num_envs % len(local) == 0:
            mesh = Mesh(np.array(local), ("envs",))
            return cls(plan, fns, (NamedSharding(mesh, P()), NamedSharding(mesh, P("envs"))))
        return cls(plan, fns, None)

    # --- the lifted functions ---
    def chunk(self, ts, num_iters=None):
        """`num_iters` (an int32 scalar, the same for every member; default all) of the chunk's iterations run."""
        return (jax.vmap(self.fns.run_chunk, in_axes=(0, None)) if self.plan.is_sweep else self.fns.run_chunk)(
            ts, num_iters
        )

    def warmup(self, ts):
        return (jax.vmap(self.fns.warmup) if self.plan.is_sweep else self.fns.warmup)(ts)

    def evaluate(self, learner, keys):
        return (jax.vmap(self.fns.evaluate) if self.plan.is_sweep else self.fns.evaluate)(learner, keys)

    def eval_keys(self, evals_done: int):
        keys = [jax.random.fold_in(k, evals_done) for k in self._eval_base]
        if not self.plan.is_sweep:
            return keys[0]
        return self._put(np.stack([np.asarray(k) for k in keys]))

    # --- placement ---
    def init(self):
        fns, plan = self.fns, self.plan
        if not plan.is_sweep:
            return self.place(fns.init(jax.random.PRNGKey(plan.config.seed)))
        keys = np.stack([np.asarray(jax.random.PRNGKey(m["seed"])) for m in self.members])
        hp = policy.stacked_hyperparams(plan.config, self.members, fns.env.action_size)
        return jax.jit(jax.vmap(fns._init), out_shardings=self.sharding)(self._put(keys), self._put(hp))

    def _state_shardings(self, ts):
        if self.plan.is_sweep:
            return jax.tree.map(lambda _: self.sharding, ts)
        replicated, by_env = self.sharding
        return jax.tree.map(lambda _: replicated, ts).replace(env=jax.tree.map(lambda _: by_env, ts.env))

    def place(self, ts):
        """Host or device arrays -> the program's layout (global arrays under several processes)."""
        if self.sharding is None:
            return jax.tree.map(jnp.asarray, ts)
        shardings = self._state_shardings(ts)
        return jax.tree.map(
            lambda x, s: jax.make_array_from_callback(np.shape(x), s, lambda idx, x=x: np.asarray(x)[idx]),
            ts,
            shardings,
        )

    def _put(self, tree):
        if not self.plan.is_sweep:
            return tree
        return jax.tree.map(
            lambda x: jax.make_array_from_callback(np.shape(x), self.sharding, lambda idx, x=x: np.asarray(x)[idx]),
            tree,
        )

    def jit(self, fn, donate: bool = False):
        kw: dict[str, Any] = {"donate_argnums": 0} if donate else {}
        if self.plan.is_sweep:
            kw["out_shardings"] = self.sharding
        return jax.jit(fn, **kw)

    # --- host side ---
    def to_host(self, tree):
        """Arrays to numpy on the host; across processes every process gets the whole (gathered) value."""
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            return multihost_utils.process_allgather(tree, tiled=True)
        return jax.device_get(tree)

    def iteration(self, counter) -> int:
        """An int32 counter of the state (the same in every member) as a Python int."""
        return int(np.asarray(self.to_host(counter)).reshape(-1)[0])

    def metrics_dir(self, i: int) -> str:
        return rundir.metrics_dir(self.plan.run_dir, i if self.plan.is_sweep else None)

    def seed(self, i: int) -> int:
        return int(self.members[i]["seed"])

    def label(self, i: int) -> str:
        names = self.plan.sweep.names if self.plan.is_sweep else ()
        return f"{sweep_lib.member_label(self.members[i], names)} seed {self.seed(i)}"


EVAL_SEED_OFFSET = 1_000_003  # evaluation keys: PRNGKey(seed + offset) folded with the evaluation count


def _report_row(rows: list[dict[str, float]]) -> dict[str, float]:
    """What the progress line shows: the run's row, or the members' mean (NaN members left out)."""
    if len(rows) == 1:
        return rows[0]
    out = {}
    for k in rows[0]:
        vals = [r[k] for r in rows if math.isfinite(r[k])]
        out[k] = sum(vals) / len(vals) if vals else math.nan
    return out


def _sweep_rows(prog: _Program, members: list[_MemberLog], summaries, member_sps: float) -> list[dict[str, Any]]:
    rows = []
    for i, (m, s) in enumerate(zip(members, summaries, strict=True)):
        hp = rundir.member_hyperparams(prog.plan.config, prog.members[i])
        rows.append({
            "member": i, "seed": s["seed"], **hp,
            "final_eval_return": s["final_eval_return"], "best_eval_return": s["best_eval_return"],
            "auc_eval_return": sweep_lib.area_under_curve(np.array(m.steps), np.array(m.returns)),
            "env_steps": s["env_steps"], "env_steps_per_second": member_sps,
            "diverged_at_env_step": "" if m.diverged_at is None else m.diverged_at,
        })  # fmt: skip
    return rows


def _split_nonfinite(metrics, n_members: int, is_sweep: bool) -> tuple[dict[str, Any], list[dict[str, int]]]:
    """The chunk's metrics without its non-finite report, and per member {quantity: first bad iteration}."""
    report = {k: np.asarray(v) for k, v in metrics.items() if k.startswith(health.NONFINITE_PREFIX)}
    rest = {k: v for k, v in metrics.items() if k not in report}
    per_member = [
        health.split_nonfinite({k: v[i] if is_sweep else v for k, v in report.items()})[1] for i in range(n_members)
    ]
    return rest, per_member


def _checkpoint_note(saver: checkpoint.Checkpointer) -> str:
    """What a stopped run leaves: the checkpoint on disk once the write in flight has ended (whatever its outcome)."""
    saver.join()
    ckpt_dir = saver.directory
    try:  # loading it is what shows it intact
        saved_steps = checkpoint.load_meta(ckpt_dir)[1]["env_steps"]
        return f"the last good checkpoint (env step {saved_steps}) in {ckpt_dir} is intact"
    except checkpoint.CheckpointError:
        return f"no checkpoint was written yet in {ckpt_dir}"


def _nonfinite_text(bad: dict[str, int], chunk_start: int, config: Config, saver: checkpoint.Checkpointer) -> str:
    return health.nonfinite_message(bad, chunk_start, config.num_envs, _checkpoint_note(saver))


def _mean_return(rows: list[dict[str, float]]) -> float:
    """The members' mean eval return (the finite ones; NaN when none is), which best.ckpt is chosen by."""
    finite = [r["eval/episode_return"] for r in rows if math.isfinite(r["eval/episode_return"])]
    return sum(finite) / len(finite) if finite else math.nan


def _meta(config: Config, env_steps: int, members: list[_MemberLog], evals_done: int, wall: float,
          best_mean: float) -> dict[str, Any]:  # fmt: skip
    meta = {
        "env_steps": env_steps,
        "best_eval_return": max(m.best for m in members),
        "evals_done": evals_done,
        "wall_time_s": wall,
        "best_mean_eval_return": best_mean,
        "config": config.to_dict(),
    }
    meta["members"] = [{"best_eval_return": m.best, "diverged_at_env_step": m.diverged_at} for m in members]
    return meta


def _progress_bar(config: Config, env_steps: int, out):
    if not (config.progress and hasattr(out, "isatty") and out.isatty()):
        return None
    from tqdm import tqdm

    return tqdm(total=config.total_steps, initial=env_steps, unit="step", unit_scale=True, file=out)


def _report(bar, out, env_steps: int, total: int, row: dict[str, float]) -> None:
    if bar is None:
        print(format_line(env_steps, total, row, row["train/env_steps_per_second"]), file=out, flush=True)
        return
    bar.update(min(env_steps, total) - bar.n)
    bar.set_postfix(eval_return=f"{row['eval/episode_return']:.1f}", sps=f"{row['train/env_steps_per_second']:.0f}")
