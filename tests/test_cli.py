"""train.py's command line: bad input exits 2 with one line and writes nothing; presets; config.json."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mjx_tecrl.envs import registry

import mjx_tecrl.run as run_mod
from mjx_tecrl import checkpoint, cli, rundir
from mjx_tecrl.config import Config, ConfigError, make_config
from mjx_tecrl.logging import write_json

TRAIN = str(Path(__file__).resolve().parents[1] / "train.py")


def _snapshot(path: Path) -> dict[str, bytes]:
    """Every file under `path` with its bytes (to check that nothing was written or changed)."""
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()} | {
        str(p.relative_to(path)) + "/": b"" for p in path.rglob("*") if p.is_dir()
    }


# --- bad input through the real entry point ---------------------------------------------------------
# (id, argv, extra env, substrings the one stderr line must hold). "{run}" is a directory holding a run
# (a config.json), "{empty}" an existing directory with no run, "{badckpt}" a run whose checkpoint is corrupt,
# "{badjson}" / "{badtypes}" a checkpoint next to a config.json that is not JSON / not a config. (A run with no
# checkpoint yet is not bad input: --resume starts it over, tests/test_kills.py.)
BAD_INPUT = [
    ("unknown-env", ["--env", "no_such_env"], {}, ["--env 'no_such_env'"]),
    ("unknown-algo", ["--algo", "ppo"], {}, ["--algo 'ppo'"]),
    ("num-envs-0", ["--num-envs", "0"], {}, ["--num-envs 0"]),
    ("num-envs-negative", ["--num-envs", "-3"], {}, ["--num-envs -3"]),
    ("num-envs-not-int", ["--num-envs", "x"], {}, ["--num-envs", "'x'"]),
    ("batch-over-buffer", ["--batch-size", "512", "--buffer-size", "256"], {}, ["--batch-size 512", "256"]),
    (
        "updates-below-one-block",
        ["--updates-per-step", "0.01", "--num-envs", "32", "--policy-delay", "2"],
        {},
        ["--updates-per-step 0.01", "--num-envs 32", "--policy-delay 2"],
    ),
    ("batch-over-per-env", ["--batch-size", "512", "--buffer-per-env", "8"], {}, ["--batch-size 512", "per-env 8"]),
    ("matmul-dtype", ["--matmul-dtype", "float16"], {}, ["--matmul-dtype 'float16'", "float32, bfloat16"]),
    ("weight-decay-negative", ["--weight-decay", "-0.1"], {}, ["--weight-decay -0.1", "non-negative"]),
    ("gamma-1.5", ["--gamma", "1.5"], {}, ["--gamma 1.5"]),
    (
        "entropy-baseline-without-horizon",
        ["--entropy-baseline", "--budget-horizon", "discounted"],
        {},
        ["--entropy-baseline", "--budget-horizon discounted"],
    ),
    ("bad-input-creates-no-cache", ["--gamma", "2", "--compile-cache", "cache"], {}, ["--gamma 2"]),
    ("gamma-nan", ["--gamma", "nan"], {}, ["--gamma nan"]),
    ("out-holds-run", ["--out", "{run}"], {}, ["--out", "{run}", "already holds a run", "continue it with --resume"]),
    ("resume-no-run", ["--resume", "{empty}"], {}, ["--resume", "{empty}"]),
    ("resume-corrupt-checkpoint", ["--resume", "{badckpt}"], {}, ["--resume", "{badckpt}", "corrupt or truncated"]),
    ("resume-corrupt-config", ["--resume", "{badjson}"], {}, ["--resume", "{badjson}", "config.json"]),
    ("resume-config-wrong-types", ["--resume", "{badtypes}"], {}, ["--resume", "{badtypes}", "config.json"]),
    (
        "num-envs-vs-devices",
        ["--num-envs", "3"],
        {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"},
        ["--num-envs 3", "device count 2"],
    ),
]


@pytest.fixture(scope="module")
def bad_input_results(tmp_path_factory):
    """Run every BAD_INPUT case as `python train.py ...` at once (they only import and validate).

    Each case runs in its own empty working directory. Returns ({id: (returncode, stdout, stderr, cwd)},
    placeholder -> path, and snapshots of those directories before and after).
    """
    base = tmp_path_factory.mktemp("cli")
    subst = {k: str(base / k.strip("{}")) for k in ("{run}", "{empty}", "{badckpt}", "{badjson}", "{badtypes}")}
    for d in subst.values():
        os.mkdir(d)
    write_json(os.path.join(subst["{run}"], "config.json"), Config(out=subst["{run}"]).to_dict())
    write_json(os.path.join(subst["{badckpt}"], "config.json"), Config(out=subst["{badckpt}"]).to_dict())
    os.makedirs(os.path.join(subst["{badckpt}"], "checkpoints"))
    Path(subst["{badckpt}"], "checkpoints", checkpoint.LATEST).write_bytes(b"\x93 half a checkpoint")
    Path(subst["{badjson}"], "config.json").write_text('{"env": "inverted_pendulum", "seed": ')
    write_json(os.path.join(subst["{badtypes}"], "config.json"), {**Config().to_dict(), "hidden_sizes": 5})
    for key in ("{badjson}", "{badtypes}"):
        checkpoint.save(os.path.join(subst[key], "checkpoints"), {"x": np.zeros(3, np.float32)}, {"env_steps": 0})
    before = {k: _snapshot(Path(v)) for k, v in subst.items()}

    procs = {}
    for case_id, argv, extra_env, _ in BAD_INPUT:
        cwd = base / f"cwd-{case_id}"
        cwd.mkdir()
        env = {**os.environ, **extra_env}
        if "XLA_FLAGS" in extra_env and os.environ.get("XLA_FLAGS"):
            env["XLA_FLAGS"] = os.environ["XLA_FLAGS"] + " " + extra_env["XLA_FLAGS"]
        args = [subst.get(a, a) for a in argv]
        procs[case_id] = (
            subprocess.Popen(
                [sys.executable, TRAIN, *args],
                cwd=cwd,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            ),
            cwd,
        )
    results = {}
    for case_id, (proc, cwd) in procs.items():
        out, err = proc.communicate(timeout=300)
        results[case_id] = (proc.returncode, out, err, cwd)
    after = {k: _snapshot(Path(v)) for k, v in subst.items()}
    return results, subst, before, after


@pytest.mark.parametrize("case_id,argv,extra_env,expected", BAD_INPUT, ids=[c[0] for c in BAD_INPUT])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(bad_input_results, case_id, argv, extra_env, expected):
    results, subst, before, after = bad_input_results
    returncode, out, err, cwd = results[case_id]
    lines = err.splitlines()
    assert returncode == 2, f"exit {returncode}; stderr:\n{err}"
    assert len(lines) == 1, f"expected exactly one stderr line, got:\n{err}"
    assert "Traceback" not in err
    assert lines[0].startswith("train.py: error:")
    for s in expected:
        assert subst.get(s, s) in lines[0], f"{s!r} missing from {lines[0]!r}"
    assert out == ""
    assert list(cwd.iterdir()) == [], "a rejected command wrote into the working directory"
    assert after == before, "a rejected command changed a run directory it was pointed at"


def test_list_envs_prints_every_bare_name_and_exits_0(tmp_path):
    proc = subprocess.run([sys.executable, TRAIN, "--list-envs"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    table, _, notes = proc.stdout.partition("\n\n")
    rows = [line.split() for line in table.splitlines() if line.strip()]
    assert rows[0][0] == "name"
    first_column = [r[0] for r in rows[1:]]
    assert sorted(first_column) == sorted(registry.bare_names())
    assert len(registry.bare_names()) >= 10  # the Gymnasium MuJoCo suite
    braxes = [n for n in registry.list_envs() if n.startswith("brax:")]
    assert len(braxes) == len(first_column) and all(n in notes for n in braxes)  # every brax:<name> --env takes
    assert "package.module:factory" in notes
    assert list(tmp_path.iterdir()) == []


# --- fuzzed bad values, in process --------------------------------------------------------------------
POSITIVE_INTS = (
    "num_envs", "total_steps", "batch_size", "buffer_size",
    "policy_delay", "episode_length", "eval_every", "num_eval_envs",
)  # fmt: skip
NON_NEGATIVE_INTS = ("learning_starts", "checkpoint_every", "seed", "buffer_per_env")
POSITIVE_FLOATS = ("actor_lr", "critic_lr", "alpha_lr", "rho", "reward_scale", "xi", "epsilon")
NON_FINITE = st.sampled_from([math.nan, math.inf, -math.inf])
NOT_AN_INT = st.sampled_from(["x", "1.5", "", "1e3", "nan", "3 4", "0x10"])
NOT_A_FLOAT = st.sampled_from(["x", "", "1,5", "one", "--"])


def _flt(x: float) -> str:
    return repr(float(x))


@st.composite
def invalid_flag(draw) -> tuple[str, str]:
    """(field name, argv text) with a value that validation must refuse."""
    kind = draw(st.sampled_from(["pos_int", "nonneg_int", "not_int", "gamma", "tau", "pos_float", "finite",
                                 "not_float", "hidden"]))  # fmt: skip
    if kind == "pos_int":
        return draw(st.sampled_from(POSITIVE_INTS)), str(draw(st.integers(max_value=0)))
    if kind == "nonneg_int":
        return draw(st.sampled_from(NON_NEGATIVE_INTS)), str(draw(st.integers(max_value=-1)))
    if kind == "not_int":
        return draw(st.sampled_from(POSITIVE_INTS + NON_NEGATIVE_INTS)), draw(NOT_AN_INT)
    if kind == "gamma":  # must lie in (0, 1)
        bad = st.one_of(st.floats(max_value=0.0), st.floats(min_value=1.0), NON_FINITE)
        return "gamma", _flt(draw(bad))
    if kind == "tau":  # must lie in (0, 1]
        bad = st.one_of(st.floats(max_value=0.0), st.floats(min_value=1.0, exclude_min=True), NON_FINITE)
        return "tau", _flt(draw(bad))
    if kind == "pos_float":
        return draw(st.sampled_from(POSITIVE_FLOATS)), _flt(draw(st.one_of(st.floats(max_value=0.0), NON_FINITE)))
    if kind == "finite":  # any finite value is allowed here, nothing else
        return "init_log_alpha", _flt(draw(NON_FINITE))
    if kind == "not_float":
        return draw(st.sampled_from(("gamma", "tau", "init_log_alpha") + POSITIVE_FLOATS)), draw(NOT_A_FLOAT)
    sizes = draw(st.lists(st.integers(min_value=-5, max_value=64), min_size=1, max_size=4))
    if all(s > 0 for s in sizes):
        sizes[draw(st.integers(0, len(sizes) - 1))] = draw(st.integers(max_value=0))
    return "hidden_sizes", ",".join(map(str, sizes))


def _must_not_run(*args, **kwargs):
    raise AssertionError("validation let an invalid value through to training")


def test_fuzzed_invalid_values_exit_2_naming_the_flag_and_compile_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(run_mod, "run", _must_not_run)
    compiles = []

    def listener(event, duration, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            compiles.append(duration)

    jax.monitoring.register_event_duration_secs_listener(listener)

    @settings(max_examples=50, deadline=None, database=None)
    @given(case=invalid_flag(), equals_form=st.booleans())
    def check(case, equals_form):
        name, text = case
        flag = "--" + name.replace("_", "-")
        argv = [f"{flag}={text}"] if equals_form else [flag, text]
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()) as out:
            with pytest.raises(SystemExit) as exc:
                cli.main(argv)
        assert exc.value.code == 2, (argv, err.getvalue())
        lines = err.getvalue().splitlines()
        assert len(lines) == 1, (argv, err.getvalue())
        assert lines[0].startswith("train.py: error:") and flag in lines[0], (argv, lines[0])
        assert out.getvalue() == ""

    try:
        check()
    finally:
        unregister = getattr(jax.monitoring, "unregister_event_duration_listener", None)
        if unregister is None:
            from jax._src import monitoring

            unregister = monitoring.unregister_event_duration_listener
        unregister(listener)
    assert compiles == [], f"validation compiled {len(compiles)} XLA program(s)"
    assert list(tmp_path.iterdir()) == []


def test_valid_flags_pass_validation_without_writing(tmp_path, monkeypatch):
    """The fuzz test's premise: the same flags with valid values are accepted (prepare writes nothing)."""
    monkeypatch.chdir(tmp_path)
    overrides, want_list = cli.parse_overrides(
        [
            "--num-envs=8",
            "--gamma=0.95",
            "--tau=1.0",
            "--init-log-alpha=-2.5",
            "--hidden-sizes=8,8",
            "--learning-starts=0",
            "--seed=0",
            "--checkpoint-every=0",
            "--actor-lr=3e-4",
        ]
    )
    assert not want_list
    plan = rundir.prepare(overrides)
    c = plan.config
    assert (c.num_envs, c.gamma, c.tau, c.init_log_alpha, c.hidden_sizes) == (8, 0.95, 1.0, -2.5, (8, 8))
    assert (c.learning_starts, c.seed, c.checkpoint_every, c.actor_lr) == (0, 0, 0, 3e-4)
    assert plan.run_dir.startswith("runs" + os.sep) and c.out == plan.run_dir
    assert list(tmp_path.iterdir()) == []


# --- presets and config.json --------------------------------------------------------------------------
def test_make_config_applies_the_task_preset_then_the_flags(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tuned = registry.spec("inverted_pendulum").tuned
    assert tuned["actor_lr"] != Config().actor_lr  # the preset departs from the spec default here
    c = make_config(env="inverted_pendulum")
    for key, value in tuned.items():
        assert getattr(c, key) == value, key
    assert c.actor_lr > 1e-4 and c.critic_lr > 1e-4  # tuned for short runs: faster than the spec's 1e-4

    c = make_config(env="inverted_pendulum", actor_lr=5e-5, init_log_alpha=0.5)
    assert c.actor_lr == 5e-5 and c.init_log_alpha == 0.5  # flags win over the preset
    assert c.critic_lr == tuned["critic_lr"]  # the rest of the preset still applies

    via_cli = rundir.prepare(cli.parse_overrides(["--env", "inverted_pendulum", "--actor-lr", "5e-5"])[0]).config
    assert via_cli.actor_lr == 5e-5 and via_cli.critic_lr == tuned["critic_lr"]


def test_the_presets_come_from_the_packages_presets_file():
    """envs/presets.yaml is the presets' one source: every task's tuned and paper blocks are what the registry
    hands to make_config, and a user's own task starts from its shared locomotion block."""
    import yaml

    with open(registry.PRESETS_FILE) as f:
        data = yaml.safe_load(f)
    for name in registry.bare_names():
        for preset in ("tuned", "paper"):
            block = data["tasks"][name].get(preset) or {}
            from_registry = getattr(registry.spec(name), preset)
            assert {k: v for k, v in from_registry.items() if k != "episode_length"} == block, (name, preset)
            c = make_config(env=name, preset=preset)
            assert all(getattr(c, k) == v for k, v in block.items()), (name, preset)
    assert registry.spec("hopper").tuned == data["shared"]["locomotion"]
    try:
        assert registry.register("preset_probe", lambda: None).tuned == data["shared"]["locomotion"]
    finally:
        registry._REGISTRY.pop("preset_probe", None)


@pytest.mark.parametrize(
    "edit, words",
    [("actor_lr: 3.0e-4", "actor_lr is '3e-4' (str); a float"), ("critic_layer_norm: true", None),
     ("budget_horizon: lived", None), ("updates_per_step: 1.0", None)],
)  # fmt: skip
def test_a_presets_file_value_of_the_wrong_type_or_name_is_refused(tmp_path, edit, words):
    """YAML 1.1 reads 3e-4 as a string: the loader names the task, the key and the type a field needs, so a preset
    cannot silently become a string; an unknown key is refused as in --config."""
    text = open(registry.PRESETS_FILE).read()
    assert edit in text
    bad = {
        "actor_lr: 3.0e-4": "actor_lr: 3e-4",
        "critic_layer_norm: true": "critic_layer_norm: 2",
        "budget_horizon: lived": "budget_horizon: [lived]",
        "updates_per_step: 1.0": "updates_per_stepz: 1.0",
    }[edit]
    (tmp_path / "p.yaml").write_text(text.replace(edit, bad, 1))
    with pytest.raises(ConfigError) as e:
        registry.load_presets(str(tmp_path / "p.yaml"))
    assert (words or ("unknown config keys" if "stepz" in bad else "shared.locomotion.")) in str(e.value)


def test_paper_preset_keeps_the_spec_values():
    c = make_config(env="inverted_pendulum", preset="paper")
    assert (c.actor_lr, c.critic_lr, c.alpha_lr) == (1e-4, 1e-4, 3e-4)
    assert c.init_log_alpha == 1.0 and c.rho == 1.0 and c.tau == 0.005 and c.learning_starts == 10_000
    assert make_config(env="inverted_pendulum", preset="paper", actor_lr=2e-4).actor_lr == 2e-4


@pytest.mark.parametrize("preset", ["tuned", "paper"])
def test_rho_is_the_papers_20_for_humanoid_and_walker2d_under_paper_only(preset):
    """paper: rho 20 on humanoid and walker2d (spec §3.4); tuned: 1 everywhere (docs/decisions.md, "rho")."""
    for name in registry.bare_names():
        expected = 20.0 if preset == "paper" and name in ("humanoid", "walker2d") else 1.0
        assert make_config(env=name, preset=preset).rho == expected, name
    assert make_config(env="humanoid", preset=preset, rho=5.0).rho == 5.0


def test_unknown_preset_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="--preset 'fast'.*tuned, paper, parallel"):
        rundir.prepare({"preset": "fast"})


def test_help_states_when_the_parallel_preset_applies():
    text = " ".join(cli.build_parser().format_help().split())
    assert "parallel" in text and "the default from 1024 envs" in text


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"env": "hopper", "algo": "sac", "hidden_sizes": (7, 9, 11), "gamma": 0.97, "actor_lr": 1.2345e-4},
        {"env": "humanoid", "preset": "paper", "normalize_obs": True, "checkpoint_buffer": False, "seed": 12345,
         "init_log_alpha": -0.1, "tau": 1.0 / 3.0, "out": "runs/x y", "critic_loss": "huber"},
    ],
)  # fmt: skip
def test_config_round_trips_through_config_json(tmp_path, overrides):
    config = make_config(**overrides)
    path = tmp_path / "config.json"
    write_json(str(path), config.to_dict())
    with open(path) as f:
        loaded = Config.from_dict(json.load(f))
    assert loaded == config
    assert isinstance(loaded.hidden_sizes, tuple)
    assert set(json.loads(path.read_text())) == {f.name for f in dataclasses.fields(Config)}
    assert list(tmp_path.iterdir()) == [path]  # no temp file left behind


def test_config_from_dict_refuses_unknown_keys():
    with pytest.raises(ConfigError, match="bogus"):
        Config.from_dict({**Config().to_dict(), "bogus": 1})


def test_the_console_script_and_python_m_are_train_py(tmp_path):
    """`mjx-tecrl-train` (installed with the package) and `python -m mjx_tecrl` run train.py's main: same exit
    status and the same one line for bad input, and the same task table."""
    script = shutil.which("mjx-tecrl-train")
    assert script, "mjx-tecrl-train is not on PATH: the package's [project.scripts] entry was not installed"
    ways = [[sys.executable, TRAIN], [script], [sys.executable, "-m", "mjx_tecrl"]]
    bad = [subprocess.run([*w, "--gamma", "2"], capture_output=True, text=True, cwd=tmp_path) for w in ways]
    assert [r.returncode for r in bad] == [2, 2, 2]
    assert len({r.stderr for r in bad}) == 1 and "--gamma 2" in bad[0].stderr
    tables = [subprocess.run([*w, "--list-envs"], capture_output=True, text=True, cwd=tmp_path) for w in ways]
    assert [r.returncode for r in tables] == [0, 0, 0] and len({r.stdout for r in tables}) == 1
    assert list(tmp_path.iterdir()) == []


# --- --config FILE and --print-config (issue 21) --------------------------------------------------------------
def _print_config(argv, cwd) -> dict:
    r = subprocess.run([sys.executable, TRAIN, *argv, "--print-config"], capture_output=True, text=True, cwd=cwd)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_print_config_prints_the_resolved_config_and_writes_nothing(tmp_path):
    printed = _print_config(["--env", "hopper", "--num-envs", "64"], tmp_path)
    expected = make_config(env="hopper", num_envs=64).to_dict()
    assert {k: v for k, v in printed.items() if k != "out"} == {k: v for k, v in expected.items() if k != "out"}
    assert printed["actor_lr"] == 3e-4 and printed["critic_layer_norm"] is True  # the preset's, not the spec's
    assert list(tmp_path.iterdir()) == []


def test_a_config_file_sits_between_the_preset_and_the_flags(tmp_path):
    (tmp_path / "c.yaml").write_text("env: hopper\nnum-envs: 16\nactor_lr: 0.001\nhidden_sizes: [64, 64]\n")
    (tmp_path / "c.json").write_text(json.dumps({"env": "hopper", "num_envs": 16, "actor_lr": 0.001}))
    for name in ("c.yaml", "c.json"):
        c = _print_config(["--config", name, "--actor-lr", "0.002"], tmp_path)
        assert (c["env"], c["num_envs"], c["actor_lr"]) == ("hopper", 16, 0.002)  # the flag wins over the file
        assert c["critic_lr"] == make_config(env="hopper").critic_lr  # the preset fills what the file leaves
    assert _print_config(["--config", "c.yaml"], tmp_path)["hidden_sizes"] == [64, 64]


def test_an_old_runs_config_json_starts_a_new_run_like_it(tmp_path):
    old = make_config(env="walker2d", num_envs=8, seed=3, rho=2.0, out="runs/old")
    write_json(str(tmp_path / "config.json"), {**old.to_dict(), "resume": "runs/old"})
    c = _print_config(["--config", "config.json"], tmp_path)
    assert {k: v for k, v in c.items() if k != "out"} == {k: v for k, v in old.to_dict().items() if k != "out"}
    assert c["out"] != "runs/old"  # a new directory: out and resume in a file are ignored


@pytest.mark.parametrize(
    "content, name, words",
    [('{"env": "hopper", "nope": 1}', "c.json", ["unknown config keys ['nope']"]),
     ("{not json", "c.json", ["is not valid JSON"]),
     ("- a\n- b\n", "c.yaml", ["must hold a mapping"]),
     ('{"gamma": 2}', "c.json", ["--gamma 2"]),
     (None, "missing.json", ["cannot be read"])],
)  # fmt: skip
def test_a_bad_config_file_is_one_line_and_exit_2(tmp_path, content, name, words):
    if content is not None:
        (tmp_path / name).write_text(content)
    before = _snapshot(tmp_path)
    r = subprocess.run([sys.executable, TRAIN, "--config", name], capture_output=True, text=True, cwd=tmp_path)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("train.py: error:")
    assert all(w in lines[0] for w in words), lines[0]
    assert _snapshot(tmp_path) == before
