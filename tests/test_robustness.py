"""Perturbations (envs/perturb.py), training-time domain randomisation, and the robustness CLI.

The wrapper tests run on `ProbeEnv` (tests/toy_envs.py): no physics, a small MJX model in `sys`, and an
observation that shows the model fields, the action and the velocities the env was given inside the vmapped,
traced step. The end-to-end test evaluates untrained tiny policies on inverted_pendulum (Gymnasium's, in MJX).
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from mjx_tecrl.envs import registry
from mjx_tecrl.envs.perturb import NAMES, NEUTRAL, SCALES, Perturbation, PerturbedEnv, parse_ranges, scale_model
from tiny_runs import tiny_run_dir
from toy_envs import PROBE_FIELDS, ProbeEnv

from mjx_tecrl import cli, robustness, rollout, study, study_report
from mjx_tecrl.loop import make_train

ROOT = Path(__file__).resolve().parents[1]

# The model fields each physics scale must multiply (and by what power of the scale); every other probed
# field must stay bitwise unchanged.
SCALED_FIELDS = {
    "mass": {"body_mass": 1, "body_inertia": 1, "dof_invweight0": -1},
    "friction": {"geom_friction": 1},
    "gain": {"actuator_gainprm": 1, "actuator_biasprm": 1, "actuator_forcerange": 1},
    "damping": {"dof_damping": 1},
    "gravity": {"opt.gravity": 1},
}


def _rollout(penv: PerturbedEnv, keys, perturbation, actions):
    """Reset every env with its perturbation and step it through `actions` [T, N, A]; the states per step."""

    def run(keys, perturbation, actions):
        state = jax.vmap(penv.reset_with)(keys, perturbation)

        def body(s, a):
            nxt = jax.vmap(penv.step)(s, a)
            return nxt, nxt

        return jax.lax.scan(body, state, actions)[1]

    return jax.jit(run)(keys, perturbation, actions)


@pytest.mark.usefixtures("fast_compile")
def test_each_physics_scale_changes_the_fields_it_names_in_each_env_separately():
    probe = ProbeEnv()
    penv = PerturbedEnv(probe)
    base = probe.split(probe.reset(jax.random.PRNGKey(0)).obs)
    scales = np.array([0.5, 1.0, 2.0], np.float32)
    n = len(SCALES) * len(scales)  # env k: scale SCALES[k // 3] at scales[k % 3], the others neutral
    values = {name: np.ones(n, np.float32) for name in SCALES}
    for i, name in enumerate(SCALES):
        values[name][3 * i : 3 * i + 3] = scales
    keys = jax.random.split(jax.random.PRNGKey(1), n)
    states = _rollout(penv, keys, Perturbation.make((n,), **values), jnp.zeros((2, n, probe.action_size)))
    seen = probe.split(np.asarray(states.inner.obs[-1]))  # what the env read from `sys` inside the step
    for i, name in enumerate(SCALES):
        for j, s in enumerate(scales):
            env = 3 * i + j
            for field in PROBE_FIELDS:
                power = SCALED_FIELDS[name].get(field, 0)
                expected = base[field] * np.float32(s) ** power if power else base[field]
                if field in ("actuator_gainprm", "actuator_biasprm") and power:
                    # only the three affine coefficients of each actuator are scaled
                    cols = np.arange(expected.size) % 10 < 3
                    expected = np.where(cols, expected, base[field])
                np.testing.assert_allclose(seen[field][env], expected, rtol=1e-6, err_msg=f"{name}={s}: {field}")
                if s == 1.0 or not power:
                    np.testing.assert_array_equal(seen[field][env], base[field], err_msg=f"{name}={s}: {field}")
    # The scaled fields really differ between the envs of one batch (not one global copy).
    assert seen["body_mass"][0, 1] == 1.0 and seen["body_mass"][2, 1] == 4.0
    assert seen["opt.gravity"][12, 2] == np.float32(-9.81 * 0.5) and seen["opt.gravity"][14, 2] == np.float32(-19.62)
    assert penv.unwrapped.sys is penv.base_sys  # the base model is back in place after tracing


@pytest.mark.parametrize("name", ["inverted_pendulum", "brax:inverted_pendulum"])  # an mjx.Model, a brax System
def test_scale_model_on_a_task_model_per_env(name):
    sys_ = registry.make(name).unwrapped.sys
    p = Perturbation.make((2,), mass=jnp.array([0.5, 2.0]), gravity=jnp.array([1.0, 0.0]), gain=jnp.array([2.0, 1.0]))
    models = jax.vmap(lambda q: scale_model(sys_, q))(p)
    assert type(models) is type(sys_)
    np.testing.assert_allclose(models.body_mass, np.stack([sys_.body_mass * 0.5, sys_.body_mass * 2.0]))
    np.testing.assert_allclose(models.dof_invweight0, np.stack([sys_.dof_invweight0 * 2, sys_.dof_invweight0 / 2]))
    np.testing.assert_array_equal(models.opt.gravity, np.stack([sys_.opt.gravity, np.zeros(3)]))
    np.testing.assert_array_equal(models.actuator_gainprm[0, :, 0], sys_.actuator_gainprm[:, 0] * 2)
    np.testing.assert_array_equal(models.actuator_forcerange[0], sys_.actuator_forcerange)  # infinite: kept
    np.testing.assert_array_equal(models.geom_friction[1], sys_.geom_friction)


@pytest.mark.usefixtures("fast_compile")
def test_noise_perturbations_change_only_what_they_name():
    probe = ProbeEnv()
    penv = PerturbedEnv(probe, max_delay=2, push_every=1)  # push_every=1: a push at every step
    n, steps, a = 4, 5, probe.action_size
    settings = [{}, {"obs_noise": 0.5}, {"action_noise": 0.5}, {"push": 2.0}, {"delay": 2}]
    keys = jnp.tile(jax.random.split(jax.random.PRNGKey(2), n), (len(settings), 1))  # same episodes each
    values = {name: np.repeat([s.get(name, NEUTRAL[name]) for s in settings], n) for name in NAMES}
    actions = 0.1 * jnp.arange(1, steps + 1, dtype=jnp.float32)[:, None, None] * jnp.ones((steps, n * 5, a))
    actions = actions * jnp.tile(jnp.arange(1, n + 1, dtype=jnp.float32), len(settings))[None, :, None]
    states = _rollout(penv, keys, Perturbation.make((len(settings) * n,), **values), actions)
    obs, inner = np.asarray(states.obs), np.asarray(states.inner.obs)
    group = {name: slice(k * n, (k + 1) * n) for k, name in enumerate(["neutral", *NAMES[5:]])}
    neutral = group["neutral"]

    # Neutral: exactly the wrapped env under the same keys and actions.
    def plain(keys, actions):
        s = jax.vmap(probe.reset)(keys)
        return jax.lax.scan(lambda s, a: (jax.vmap(probe.step)(s, a),) * 2, s, actions)[1].obs

    np.testing.assert_array_equal(obs[:, neutral], np.asarray(jax.jit(plain)(keys[:n], actions[:, :n])))
    np.testing.assert_array_equal(obs[:, neutral], inner[:, neutral])

    # Observation noise: the policy's observation changes (by about the std); the simulation does not.
    g = group["obs_noise"]
    np.testing.assert_array_equal(inner[:, g], inner[:, neutral])
    assert 0.4 < np.std(obs[:, g] - inner[:, g]) < 0.6

    # Action noise: only the action the env receives changes.
    g = group["action_noise"]
    parts, ref = probe.split(obs[:, g]), probe.split(obs[:, neutral])
    assert np.all(parts["action"] != ref["action"])
    for name in ref:
        if name != "action":
            np.testing.assert_array_equal(parts[name], ref[name], err_msg=name)

    # Pushes: only the root's horizontal velocity (the slider, dof 0), by exactly the magnitude each step.
    g = group["push"]
    parts, ref = probe.split(obs[:, g]), probe.split(obs[:, neutral])
    for name in ref:
        if name != "qvel":
            np.testing.assert_array_equal(parts[name], ref[name], err_msg=name)
    np.testing.assert_array_equal(parts["qvel"][..., 1], ref["qvel"][..., 1])  # the hinge is not pushed
    kicks = np.diff(np.asarray(states.inner.pipeline_state.qvel[:, g, 0]), axis=0)
    np.testing.assert_allclose(np.abs(kicks), 2.0, rtol=1e-5)

    # Delay: the env receives the action chosen two steps earlier (zeros before the first).
    g = group["delay"]
    parts, ref = probe.split(obs[:, g]), probe.split(obs[:, neutral])
    np.testing.assert_array_equal(parts["action"][2:], np.asarray(actions[:-2, g]))
    np.testing.assert_array_equal(parts["action"][:2], 0.0)
    np.testing.assert_array_equal(parts["qvel"], ref["qvel"])


@pytest.mark.usefixtures("fast_compile")
def test_domain_randomisation_draws_new_physics_per_env_at_each_reset(tiny_config):
    probe = ProbeEnv(terminate_after=2)
    config = tiny_config(randomize="mass=0.5:2,friction=0.5:1.5")
    fns = make_train(config, probe)
    assert isinstance(fns.env, PerturbedEnv) and fns.env.nominal is probe  # evaluations run on the task itself
    penv, n = fns.env, 6
    state = rollout.reset(penv, jax.random.PRNGKey(3), n)
    mass0 = np.asarray(state.sim.perturbation.mass)
    assert len(set(mass0.tolist())) == n and np.all((mass0 >= 0.5) & (mass0 <= 2.0))
    np.testing.assert_array_equal(state.sim.perturbation.gain, 1.0)  # not randomised: neutral
    seen = probe.split(np.asarray(state.sim.obs))["body_mass"][:, 1]
    np.testing.assert_allclose(seen, 2.0 * mass0, rtol=1e-6)  # each env simulates its own draw
    step = jax.jit(lambda s, k: rollout.step(penv, s, jnp.zeros((n, probe.action_size)), k, 100)[0])
    state = step(state, jax.random.PRNGKey(4))
    np.testing.assert_array_equal(state.sim.perturbation.mass, mass0)  # no reset: same physics
    state = step(state, jax.random.PRNGKey(5))  # every episode terminates here: the pipeline resets them
    mass1 = np.asarray(state.sim.perturbation.mass)
    assert np.all(mass1 != mass0) and np.all((mass1 >= 0.5) & (mass1 <= 2.0))


@pytest.mark.parametrize(
    "value, message",
    [
        ("mass=0.8", "NAME=LOW:HIGH"),
        ("mass=0.8:1.2,noise=0:1", "NAME=LOW:HIGH"),
        ("obs_noise=0:1", "NAME=LOW:HIGH"),
        ("mass=0:1.2", "must be positive"),
        ("friction=2:1", "exceeds"),
        ("mass=0.8:1.2,mass=1:2", "twice"),
    ],
)
def test_bad_randomize_flag_exits_2(value, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--randomize", value, "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and "\n" not in err and "--randomize" in err and message in err
    assert not (tmp_path / "run").exists()


def test_parse_ranges():
    assert parse_ranges("mass=0.8:1.2, friction=0.5:1.5") == {"mass": (0.8, 1.2), "friction": (0.5, 1.5)}
    assert parse_ranges("") == {}


# --- the CLI -----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    runs = {"dsac-e": root / "e", "sac": root / "sac"}
    for seed, (algo, d) in enumerate(runs.items()):
        tiny_run_dir(d, algo, seed)
    runs["sweep"] = root / "sweep"
    tiny_run_dir(runs["sweep"], "dsac-e", 5, sweep_rhos=(0.5, 1.0))
    return runs


NEUTRAL_GRID = [f"{name}={NEUTRAL[name]:g}" for name in NAMES]


@pytest.mark.usefixtures("fast_compile")
def test_study_at_neutral_magnitudes_reproduces_the_plain_evaluation(tiny_runs, tmp_path, capsys):
    out = tmp_path / "study"
    grid = [g for g in NEUTRAL_GRID if not g.startswith(("mass", "delay"))] + ["mass=0.25,1", "delay=0,1"]
    runs = [str(tiny_runs[k]) for k in ("dsac-e", "sac", "sweep")]
    argv = [*runs, "--episodes", "3", "--seed", "7", "--out", str(out)]
    for g in grid:
        argv += ["--perturb", g]
    argv += ["--one-at-a-time", "--max-envs", "15"]  # 12 grid points: 3 calls of 4
    assert robustness.main(argv) == 0
    printed = capsys.readouterr().out
    assert printed.count("compiled the study program") == 1  # all algorithms and members share one program
    assert "12 envs per call, 3 call(s)" in printed
    assert "mass: return change vs unperturbed" in printed and "dsac-e" in printed and "sac" in printed

    with open(out / "robustness.csv") as f:
        rows = list(csv.DictReader(f))
    data = np.load(out / "episodes.npz")
    labels = list(zip(data["perturbation"], data["magnitude"], strict=True))
    assert labels[0] == ("none", "") and len(labels) == 1 + len(NAMES) + 2
    assert len(rows) == 4 * len(labels) and {r["algo"] for r in rows} == {"dsac-e", "sac"}
    # The sweep's members are policies of their own, grouped by the hyperparameter that differs.
    assert [(r["member"], r["seed"], r["hyperparams"]) for r in rows if r["run"] == runs[2]][:: len(labels)] == [
        ("0", "5", "rho=0.5"), ("1", "6", "rho=1")]  # fmt: skip
    assert "dsac-e rho=0.5" in printed and "dsac-e rho=1" in printed and "sac rho=1" in printed
    assert not np.array_equal(data["return"][2], data["return"][3])  # two members, two policies
    assert (out / "return_vs_magnitude.png").stat().st_size > 0 and (out / "study.json").exists()

    from mjx_tecrl.policy import load_run

    run = load_run(str(tiny_runs["dsac-e"]))
    plain = jax.jit(run.fns.evaluate)(run.members[0].learner, jax.random.PRNGKey(7))
    for p, algo in enumerate(("dsac-e", "sac")):
        ret, length = data["return"][p], data["length"][p]
        for i, (name, mag) in enumerate(labels):
            if name != "none" and float(mag) != NEUTRAL[name]:
                continue
            np.testing.assert_array_equal(ret[i], ret[0], err_msg=f"{algo} {name}={mag}")
            np.testing.assert_array_equal(length[i], length[0], err_msg=f"{algo} {name}={mag}")
        if algo == "dsac-e":  # the training-time evaluation of the same policy with the same key
            assert float(jnp.mean(ret[0])) == float(plain["eval/episode_return"])
            assert float(jnp.min(ret[0])) == float(plain["eval/episode_return_min"])
            assert float(jnp.max(ret[0])) == float(plain["eval/episode_return_max"])
            assert float(jnp.mean(length[0].astype(np.float32))) == float(plain["eval/episode_length"])
        row = next(r for r in rows if r["algo"] == algo and r["perturbation"] == "none")
        assert float(row["mean_return"]) == float(np.mean(ret[0]))
        assert float(row["fall_rate"]) == float(np.mean(data["fell"][p][0]))
        assert (float(row["fall_rate"]) > 0) == bool(np.any(length[0] < 40))
    # A quarter of the mass changes the episodes (untrained policies: still a change, either way).
    light = labels.index(("mass", "0.25"))
    assert not np.array_equal(data["return"][:, light], data["return"][:, 0])


@pytest.mark.parametrize(
    "args, message",
    [
        (["--perturb", "weight=1,2"], "unknown perturbation 'weight'"),
        (["--perturb", "mass="], "no values"),
        (["--perturb", "mass"], "NAME=V1,V2"),
        (["--perturb", "friction=0.5,x"], "'x' is not a number"),
        (["--perturb", "obs_noise=-0.1"], "must be non-negative"),
        (["--perturb", "delay=1.5"], "non-negative integer"),
        (["--perturb", "mass=0,1"], "must be positive"),
        (["--perturb", "mass=1", "--perturb", "mass=2"], "given twice"),
        (["--perturb", "mass=1", "--episodes", "0"], "--episodes 0"),
        (["--perturb", "mass=1", "--checkpoint", "best"], "has no best.ckpt; it has: latest"),
        ([], "--perturb"),
    ],
)
def test_bad_grids_exit_2_with_one_line(args, message, tiny_runs, tmp_path, capsys):
    out = tmp_path / "study"
    with pytest.raises(SystemExit) as e:
        robustness.main([str(tiny_runs["sac"]), *args, "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and "\n" not in err and message in err, err
    assert not out.exists()


def test_bad_run_dirs_exit_2(tiny_runs, tmp_path, capsys):
    other = tmp_path / "other"
    other.mkdir()
    config = json.loads((tiny_runs["sac"] / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "env": "hopper"}))
    cases = [
        ([str(tmp_path / "missing")], "does not exist"),
        ([str(tmp_path)], "no config.json"),
        ([str(tiny_runs["sac"]), str(other)], "different envs"),
        ([str(other)], "checkpoint"),
    ]
    for runs, message in cases:
        with pytest.raises(SystemExit) as e:
            robustness.main([*runs, "--perturb", "mass=1", "--out", str(tmp_path / "study")])
        err = capsys.readouterr().err.strip()
        assert e.value.code == 2 and "\n" not in err and message in err, err
    assert not (tmp_path / "study").exists()
    # An --out that already holds a study is refused, and left as it was.
    (tmp_path / "study").mkdir()
    (tmp_path / "study" / "robustness.csv").write_text("kept")
    with pytest.raises(SystemExit):
        robustness.main([str(tiny_runs["sac"]), "--perturb", "mass=1", "--out", str(tmp_path / "study")])
    assert (tmp_path / "study" / "robustness.csv").read_text() == "kept"


def test_module_entry_point_exit_status(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "mjx_tecrl.robustness", str(tmp_path), "--perturb", "gravity=1,-1"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip() == (
        "python -m mjx_tecrl.robustness: error: --perturb 'gravity=1,-1': gravity scale -1.0 must be non-negative"
    )


def test_grid_shapes():
    axes = [study.Axis("mass", (0.5, 1.0)), study.Axis("friction", (1.0, 2.0, 3.0))]
    product = study.grid(axes, one_at_a_time=False)
    assert [p.perturbation for p in product] == ["none"] + ["mass;friction"] * 6
    assert product[-1].magnitude == "1;3" and product[-1].values == {"mass": 1.0, "friction": 3.0}
    single = study.grid(axes, one_at_a_time=True)
    assert [p.magnitude for p in single] == ["", "0.5", "1", "1", "2", "3"]


SHARDED = textwrap.dedent(
    """
    import jax, jax.numpy as jnp, numpy as np
    from toy_envs import ProbeEnv
    from mjx_tecrl.envs.perturb import PerturbedEnv
    from mjx_tecrl import study
    assert jax.local_device_count() == 2
    penv = PerturbedEnv(ProbeEnv(terminate_after=7), max_delay=1)
    policy = lambda w, obs: jnp.tanh(obs[:, :2] * w)
    program = study.make_program(penv, policy, episode_length=5)
    axes = [study.Axis("mass", (0.5, 2.0)), study.Axis("delay", (0, 1))]
    points = study.grid(axes, one_at_a_time=False)  # 5 points: 3 calls of 2, the last padded
    ev = study.Evaluator(program, points, episodes=3, seed=0, points_per_call=2)
    assert ev.num_calls == 3 and len(ev.calls[0][0].sharding.device_set) == 2
    out = ev(jnp.float32(0.3))
    ref = study.Evaluator(program, points, episodes=3, seed=0, points_per_call=8)
    keys, pert = jax.device_put((ref.calls[0][0], ref.calls[0][1]), jax.devices()[0])  # one device, no mesh
    single = [np.asarray(x)[:15].reshape(5, 3) for x in program(jnp.float32(0.3), keys, pert)]
    for k, s in zip(("return", "length", "fell"), single):
        np.testing.assert_array_equal(out[k], s)
    assert len(set(np.round(out["return"][:, 0], 4))) == 5  # the points differ from each other
    print("ok")
    """
)


def test_grid_axis_is_sharded_over_devices():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "tests"), env.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, "-c", SHARDED], capture_output=True, text=True, env=env, cwd=ROOT)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-3000:]


@pytest.mark.slow
def test_randomized_training_run_trains_resumes_into_a_study(tmp_path):
    """train.py --randomize end to end: the run trains, its checkpoint (with the wrapper's per-env state) loads,
    its training-time evaluations ran on the nominal task, and the study evaluates it on the nominal model."""
    run = tmp_path / "dr"
    flags = [
        "--hidden-sizes", "16,16", "--num-envs", "4", "--batch-size", "16", "--buffer-size", "512",
        "--learning-starts", "64", "--eval-every", "64", "--num-eval-envs", "2", "--episode-length", "50",
        "--updates-per-step", "0.5", "--total-steps", "128", "--randomize", "mass=0.5:1.5,gain=0.8:1.2",
        "--out", str(run), "--no-progress",
    ]  # fmt: skip
    proc = subprocess.run([sys.executable, str(ROOT / "train.py"), *flags], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((run / "config.json").read_text())["randomize"] == "mass=0.5:1.5,gain=0.8:1.2"
    from mjx_tecrl.policy import load_run

    loaded = load_run(str(run))
    assert isinstance(loaded.fns.env, PerturbedEnv)
    assert robustness.main([str(run), "--perturb", "mass=1,2", "--episodes", "2", "--out", str(tmp_path / "s")]) == 0
    with open(tmp_path / "s" / "robustness.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["magnitude"] for r in rows] == ["", "1", "2"] and rows[0]["randomize"] == "mass=0.5:1.5,gain=0.8:1.2"
    assert rows[0]["mean_return"] == rows[1]["mean_return"]


def test_summary_and_plots_from_rows(tmp_path):
    """Relative returns against the unperturbed point per algo, 95% bands over seeds, a heat map for 2 axes."""
    axes = [study.Axis("mass", (0.5, 2.0)), study.Axis("obs_noise", (0.0, 0.1))]
    points = study.grid(axes, one_at_a_time=False)
    rows = []
    for algo, base in (("dsac-e", 100.0), ("sac", -50.0)):
        for jitter in (-1.0, 1.0):  # two seeds
            for p in points:
                factor = 0.5 if p.values.get("obs_noise") else 1.0  # noise halves the return (or doubles a cost)
                value = base * (factor if base > 0 else 1 / factor) + jitter
                rows.append({"algo": algo, "randomize": "", "perturbation": p.perturbation,
                             "magnitude": p.magnitude, "mean_return": value, "fall_rate": 0.0})  # fmt: skip
    text = study_report.summary(rows, points)
    assert "mass;obs_noise (4 points)" in text
    assert "dsac-e" in text and "mean  -25.0%  worst  -50.0% at mass;obs_noise=0.5;0.1" in text
    assert "mean  -50.0%  worst -100.0%" in text  # a cost that doubles: relative to |unperturbed|
    assert study_report.plot(rows, points, axes, str(tmp_path)) == [str(tmp_path / "heatmap.png")]
    assert study_report.confidence_band(np.array([99.0, 101.0])) == (100.0, 99.0, 101.0)  # two seeds: their range
    mean, low, high = study_report.confidence_band(np.arange(100.0))
    assert 4.5 < mean - low < 7 and 4.5 < high - mean < 7  # about 1.96 std / sqrt(n) = 5.7
    single = study.grid(axes, one_at_a_time=True)
    relabel = zip(rows, single * 4, strict=True)  # 2 algos x 2 seeds x 5 points either way
    rows = [{**r, "perturbation": p.perturbation, "magnitude": p.magnitude} for r, p in relabel]
    assert study_report.plot(rows, single, axes, str(tmp_path)) == [str(tmp_path / "return_vs_magnitude.png")]


def test_push_finds_the_root_translation_or_refuses():
    hopper = PerturbedEnv(registry.make("hopper"))  # planar: rootx (pushed), rootz (vertical: not pushed)
    dofs, axes = hopper._push
    assert dofs.tolist() == [0] and np.allclose(np.abs(axes), [[1.0, 0.0]])
    ant = PerturbedEnv(registry.make("ant"))  # a free joint: both horizontal velocities
    assert ant._push[0].tolist() == [0, 1]
    assert not PerturbedEnv(registry.make("reacher")).can_push  # a fixed base: nothing to push


def test_runs_on_other_physics_get_their_own_study_program(tiny_config):
    """A study of a `--physics fast` and a `faithful` run of one task must not evaluate both on the first's."""
    from mjx_tecrl.study import _program_key

    faithful, fast = tiny_config(physics="faithful"), tiny_config(physics="fast")
    assert _program_key(faithful) != _program_key(fast)
    assert _program_key(faithful) == _program_key(tiny_config(physics="faithful", seed=7, rho=5.0))  # shared
