"""The one host loop: compile, run chunks, evaluate, log, checkpoint; the run directory and its plan are
`mjx_tecrl.rundir`'s, the members and their layout `mjx_tecrl.population`'s, what is recorded `mjx_tecrl.records`'.

Everything here is I/O at the edge; the compiled chunk (`loop.TrainFns.run_chunk`) never calls back. After every
evaluation the loop calls its progress callbacks (brax's `progress_fn`): `progress_fn(env_steps, rows)` with one
row of metrics per member.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from mjx_tecrl import checkpoint, health, interrupt, memory, records, rundir
from mjx_tecrl.config import Config, ConfigError
from mjx_tecrl.population import Population
from mjx_tecrl.rundir import RunPlan

ProgressFn = Callable[[int, list[dict[str, float]]], None]


class NonFiniteError(RuntimeError):
    """Training produced NaN or inf in every member; the last good checkpoint is left as it was."""


def device_description() -> str:
    devs = jax.local_devices()
    kinds = sorted({d.device_kind for d in devs})
    return f"JAX backend: {jax.default_backend()} ({len(devs)} device(s): {', '.join(kinds)})"


def run(plan: RunPlan, out=None, progress_fn: ProgressFn | None = None) -> dict[str, Any]:
    """Train according to `plan` (one run, or every member of a sweep at once), printing to `out` (default
    stdout); returns the summary.

    The summary is also written to summary.json (a sweep's: one per member, plus sweep.csv and sweep.png).
    With several processes (`jax.distributed`), all compute and process 0 alone writes.
    Raises ConfigError, before anything is compiled or written, if the state would not fit in memory or another
    process is training the run directory; NonFiniteError when every member has gone non-finite.
    """
    held: list[int] = []  # the run directory's lock (`rundir.lock`), taken once the directory exists
    try:
        return _run(plan, sys.stdout if out is None else out, held, progress_fn)  # stdout as it is now
    finally:
        for fd in held:
            os.close(fd)  # releases the lock


def _run(plan: RunPlan, out, held: list[int], progress_fn: ProgressFn | None) -> dict[str, Any]:
    from mjx_tecrl.loop import make_train

    config, run_dir = plan.config, plan.run_dir
    env = _make_env(config)
    memory.check(config, env, members=len(plan.members))  # before anything is compiled or written
    writer = jax.process_index() == 0
    if not writer:
        out = open(os.devnull, "w")  # noqa: SIM115 - the other processes compute and stay quiet
    _print_notes(config, out)
    if writer:
        held.append(rundir.create(plan))
    pop = Population.build(plan, make_train(config, env))
    if pop.note:
        print(pop.note, file=out, flush=True)
    training = _Training(pop, env, writer, out)
    summary = training.run([records.Reporter(config, training.env_steps, out), *([progress_fn] if progress_fn else [])])
    t = training.timing
    what = f"{len(pop)} members x {training.env_steps}" if pop.is_sweep else f"{training.env_steps}"
    result = (
        f"{summary['env_steps_per_second']:.0f} env steps/s in all"
        if pop.is_sweep
        else f"best eval return {summary['best_eval_return']:.1f}, final {summary['final_eval_return']:.1f}"
    )
    print(f"done: {what} env steps, {result}, {t['wall']:.0f}s wall ({t['compile']:.0f}s compile) -> {run_dir}",
          file=out, flush=True)  # fmt: skip
    return summary


def _make_env(config: Config):
    from mjx_tecrl.envs import registry

    env = registry.make(config.env, physics=config.physics)  # a user's task is checked here (EnvFactoryError)
    if config.randomize:
        from mjx_tecrl.envs.perturb import NotPerturbable, PerturbedEnv

        try:
            PerturbedEnv(env)
        except NotPerturbable as e:
            raise ConfigError(f"--randomize {config.randomize!r}: {e}") from None
    return env


def _print_notes(config: Config, out) -> None:
    from mjx_tecrl.envs import registry

    print(device_description(), file=out, flush=True)
    upi, n = config.updates_per_iter, config.num_envs
    if abs(upi / n - config.updates_per_step) > 0.01 * config.updates_per_step:
        print(f"note: --updates-per-step {config.updates_per_step:g} at --num-envs {n} runs {upi} updates per "
              f"iteration ({upi / n:g} per env step: whole blocks of --policy-delay {config.policy_delay})",
              file=out)  # fmt: skip
    if config.preset == "parallel":
        print(f"preset parallel: batch {config.batch_size}, {upi} updates per iteration of {n} envs, "
              f"{config.n_step}-step targets, {config.buffer_capacity // n} replay rows per env", file=out)  # fmt: skip
    if jax.default_backend() == "gpu" and n < registry.PARALLEL_MIN_ENVS:
        print(f"note: on a GPU use many more environments, e.g. --num-envs 4096 (the parallel preset) "
              f"(now --num-envs {n})", file=out)  # fmt: skip


def _background(lower: Callable[[], Any]) -> Callable[..., Any]:
    """Lower and compile a program on a thread; returns the function that waits for it and gives the compiled
    program (or raises the thread's error; `join_only=True`: waits, gives nothing, raises nothing)."""
    box: dict[str, Any] = {}

    def work():
        try:
            box["compiled"] = lower().compile()
        except BaseException as e:  # noqa: BLE001 - handed to the waiting thread
            box["error"] = e

    thread = threading.Thread(target=work, name="mjx_tecrl-compile", daemon=True)  # a Ctrl-C's os._exit ends it
    thread.start()

    def wait(join_only: bool = False):
        thread.join()
        if join_only:
            return None
        if "error" in box:
            raise box["error"]
        return box["compiled"]

    return wait


class _Training:
    """One training session of a plan: the state restored or initialised, the programs compiled, then chunks,
    evaluations and checkpoints until the budget, a Ctrl-C or every member gone non-finite."""

    def __init__(self, pop: Population, env, writer: bool, out):
        plan, config = pop.plan, pop.plan.config
        self.pop, self.env, self.writer, self.out, self.config = pop, env, writer, out, config
        t_start = time.time()
        ckpt_dir = rundir.checkpoints_dir(plan.run_dir)
        self.saver = checkpoint.Checkpointer(ckpt_dir, keep=config.keep_checkpoints,
                                             buffer_every=config.checkpoint_buffer_every)  # fmt: skip
        if plan.resume and writer:
            self.saver.recover()  # a kill mid-save leaves a temp file, or a replay file latest.ckpt does not name
        # Compile once, ahead of time (compile time, init's included, is reported apart, and no chunk can retrace).
        # The state first, so that a checkpoint that does not restore stops the run before any compile thread
        # starts; then the evaluation compiles on a thread while this one compiles the chunk (training and warm-up).
        t0, fresh = time.time(), pop.init()
        init_s = time.time() - t0
        ts, meta, replay_steps = self._start(fresh, ckpt_dir)  # a restore reads files: not compile time
        t0 = time.time()
        evaluation = _background(lambda: pop.jit(pop.evaluate).lower(ts.learner, pop.eval_keys(0)))
        try:
            self.chunk_fn = pop.jit(pop.chunk, donate=True).lower(ts, np.int32(0), np.bool_(False)).compile()
        except BaseException:
            evaluation(join_only=True)  # the interpreter aborts if it exits while XLA compiles on a thread
            raise
        self.eval_fn = evaluation()
        self.timing = {"compile": init_s + time.time() - t0, "train": 0.0, "wall": 0.0, "steps": 0}
        print(f"compiled in {self.timing['compile']:.1f}s", file=out, flush=True)
        # A resume drops the rows logged after its checkpoint (a chunk the kill lost); a restart (env step 0) all.
        resume_step = int(meta["env_steps"]) if plan.resume else None
        self.logs = records.open_member_logs(pop, meta, writer, resume_step)
        for n in pop.fns.warmup_chunks() if replay_steps is None else ():  # the chunk program, its warm mode
            ts, _ = self.chunk_fn(ts, np.int32(n), np.bool_(True))
        self.ts, self.t_start, self.prior_wall = ts, t_start, float(meta.get("wall_time_s", 0.0))
        self.env_steps = pop.iteration(ts.iteration) * config.num_envs
        self.loop_start_steps = self.env_steps
        self.evals_done = int(meta.get("evals_done", 0))
        self.best_mean = float(meta.get("best_mean_eval_return", -math.inf))  # best.ckpt's: the members' mean

    def _start(self, ts, ckpt_dir: str):
        """The initial state, or the checkpoint's on a resume; (state, meta, env step of its buffer or None)."""
        plan, out = self.pop.plan, self.out
        meta: dict[str, Any] = {"env_steps": 0, "best_eval_return": -math.inf, "wall_time_s": 0.0}
        if plan.restart:
            print(f"no checkpoint in {plan.run_dir} yet (it stopped before its first): starting its run over from "
                  "env step 0 with its saved config", file=out, flush=True)  # fmt: skip
        if not plan.resume or plan.restart:
            return ts, meta, None
        restored, meta, replay_steps = checkpoint.restore_run(ckpt_dir, ts)  # no buffer: the fresh one, warmed up
        print(f"resumed {plan.run_dir} at env step {meta['env_steps']}", file=out, flush=True)
        if replay_steps is not None and replay_steps != meta["env_steps"]:
            print(f"note: the replay buffer was saved at env step {replay_steps} (--checkpoint-buffer-every "
                  f"{self.config.checkpoint_buffer_every}); training goes on with it, so this resume is not exact",
                  file=out, flush=True)  # fmt: skip
        return self.pop.place(restored), meta, replay_steps

    def run(self, progress: list[ProgressFn]) -> dict[str, Any]:
        interrupted = False
        try:
            with interrupt.StopFlag() as stop:
                while self.env_steps < self.config.total_steps and not interrupted:
                    rows = self._chunk()
                    for fn in progress:
                        fn(self.env_steps, rows)
                    interrupted = stop.stop
                    self._checkpoint(rows, final=interrupted or self.env_steps >= self.config.total_steps)
        except BaseException:
            self.saver.join()  # a write in flight completes (it is atomic either way); its error yields to this one
            raise
        finally:
            for fn in progress:  # the subscribers that hold something (the progress bar)
                if hasattr(fn, "close"):
                    fn.close()
            for m in self.logs:
                m.close()
        self.saver.wait()
        self.timing.update(wall=self._wall(), steps=self.env_steps - self.loop_start_steps)
        common = records.run_totals(self.pop, self.ts, self.env_steps, self.timing, interrupted)
        records.write_policies(self.pop, self.ts, self.env, self.writer)
        return records.write_summaries(self.pop, self.logs, common, self.writer, self.out)

    def _wall(self) -> float:
        return self.prior_wall + time.time() - self.t_start

    def _chunk(self) -> list[dict[str, float]]:
        """One chunk and its evaluation; returns the members' rows (eval and train metrics)."""
        pop, config = self.pop, self.config
        t0, chunk_start = time.time(), self.env_steps
        # The last chunk runs only the iterations left: the run stops within one iteration of total_steps.
        chunk_iters = min(pop.fns.chunk_iters, -(-(config.total_steps - self.env_steps) // config.num_envs))
        self.ts, metrics = self.chunk_fn(self.ts, np.int32(chunk_iters), np.bool_(False))
        metrics, reports = pop.split_nonfinite(pop.to_host(metrics))
        chunk_time = time.time() - t0
        self.timing["train"] += chunk_time
        self.env_steps = pop.iteration(self.ts.iteration) * config.num_envs
        # before the bad state is evaluated:
        self._mark_diverged({i: health.nonfinite_message(r, chunk_start, config.num_envs)
                             for i, r in enumerate(reports) if r})  # fmt: skip
        evaluation = pop.to_host(self.eval_fn(self.ts.learner, pop.eval_keys(self.evals_done)))
        self.evals_done += 1
        sps = chunk_iters * config.num_envs / max(chunk_time, 1e-9)  # per member; the chunk alone, no eval
        rows = [{**e, **m, "train/env_steps_per_second": sps}
                for e, m in zip(pop.rows(evaluation), pop.rows(metrics), strict=True)]  # fmt: skip
        bad = [sorted(k for k, v in row.items() if not math.isfinite(v)) for row in rows]
        at = f"in the chunk ending at env step {self.env_steps}"
        self._mark_diverged({i: f"non-finite {', '.join(b)} {at}" for i, b in enumerate(bad) if b})
        wall, improved = self._wall(), []
        for i, (m, row) in enumerate(zip(self.logs, rows, strict=True)):
            if m.log(row, self.env_steps, wall):
                improved.append(i)
        if improved:  # policy_best.npz: every process gathers the learner, process 0 writes
            records.write_policies(self.pop, self.ts, self.env, self.writer, improved, (self.env_steps, rows))
        return rows

    def _mark_diverged(self, found: dict[int, str]) -> None:
        """Members newly found non-finite ({member: what went non-finite, where}) are marked diverged; once every
        member is, the run stops here: NonFiniteError, naming the checkpoint it leaves."""
        new = {i: what for i, what in found.items() if self.logs[i].diverged_at is None}
        for i in new:
            self.logs[i].diverged_at = self.env_steps
        if new and all(log.diverged_at is not None for log in self.logs):
            i, what = list(new.items())[-1]
            who = "" if len(self.logs) == 1 else f"every member went non-finite, the last, member {i}: "
            raise NonFiniteError(f"{who}{what}; {_checkpoint_note(self.saver)}")
        for i, what in new.items():
            print(f"member {i} ({self.pop.label(i)}) went {what}; it is marked diverged and the other members go on",
                  file=self.out, flush=True)  # fmt: skip

    def _checkpoint(self, rows: list[dict[str, float]], final: bool) -> None:
        """A regular checkpoint every --checkpoint-every evaluations and at the end; best.ckpt on a new best mean."""
        config = self.config
        regular = final or (config.checkpoint_every and self.evals_done % config.checkpoint_every == 0)
        mean_return = records.mean_row(rows)["eval/episode_return"]
        best = config.checkpoint_every > 0 and mean_return > self.best_mean
        if not (regular or best):
            return
        self.best_mean = max(self.best_mean, mean_return)
        meta = records.checkpoint_meta(config, self.env_steps, self.logs, self.evals_done, self._wall(),
                                       self.best_mean)  # fmt: skip
        state = self.ts if regular and config.checkpoint_buffer else self.ts.replace(replay=None)
        # every process takes part; process 0 writes, off the training path (a copy, not a view of device memory
        # that the next chunk's donated state would overwrite), one write at a time
        if self.writer:
            self.saver.wait()
        host_state = checkpoint.snapshot(self.pop.to_host(state), copy=jax.default_backend() == "cpu")
        if self.writer:
            self.saver.save(host_state, meta, regular=bool(regular), best=best, final=final)


def _checkpoint_note(saver: checkpoint.Checkpointer) -> str:
    """What a stopped run leaves: the checkpoint on disk once the write in flight has ended (whatever its outcome)."""
    saver.join()
    try:  # loading it is what shows it intact
        saved_steps = checkpoint.load_meta(saver.directory)[1]["env_steps"]
        return f"the last good checkpoint (env step {saved_steps}) in {saver.directory} is intact"
    except checkpoint.CheckpointError:
        return f"no checkpoint was written yet in {saver.directory}"
