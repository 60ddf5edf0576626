"""`python -m mjx_tecrl.evaluate`: the training-time evaluation of a run's saved policies, every sweep member,
stochastic episodes, the policy file in Gymnasium's MuJoCo C task, and bad input.

The policies are untrained tiny ones on inverted_pendulum (tests/tiny_runs.py); tests/test_e2e.py checks trained
ones (the pendulum and HalfCheetah) in MuJoCo C against their MJX evaluation.
"""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest
from tiny_runs import tiny_run_dir

from mjx_tecrl import checkpoint, evaluate, export
from mjx_tecrl.episodes import policy_view
from mjx_tecrl.policy import load_run

pytestmark = pytest.mark.usefixtures("fast_compile")
EPISODES = 3  # the tiny runs' num_eval_envs


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    tiny_run_dir(root / "single", "dsac-e", 0)
    tiny_run_dir(root / "sweep", "dsac-e", 5, sweep_rhos=(0.5, 1.0))
    return {"single": root / "single", "sweep": root / "sweep"}


def _evaluate(capsys, *argv) -> str:
    assert evaluate.main([str(a) for a in argv]) == 0
    return capsys.readouterr().out


def test_mjx_evaluation_is_the_training_time_evaluation_for_every_member(runs, tmp_path, capsys):
    out = tmp_path / "e.json"
    printed = _evaluate(capsys, runs["sweep"], "--episodes", EPISODES, "--seed", 7, "--out", out)
    result = json.loads(out.read_text())
    assert [m["member"] for m in result["members"]] == [0, 1] and [m["seed"] for m in result["members"]] == [5, 6]
    assert [m["hyperparams"] for m in result["members"]] == [{"rho": 0.5}, {"rho": 1.0}]
    run = load_run(str(runs["sweep"]))
    for member, row in zip(run.members, result["members"], strict=True):
        plain = jax.jit(run.fns.evaluate)(member.learner, jax.random.PRNGKey(7))
        assert row["return_mean"] == pytest.approx(float(plain["eval/episode_return"]), rel=1e-6)
        assert row["return_min"] == pytest.approx(float(plain["eval/episode_return_min"]), rel=1e-6)
        assert row["length_mean"] == pytest.approx(float(plain["eval/episode_length"]))
        assert len(row["returns"]) == EPISODES and row["return_max"] == max(row["returns"])
    assert result["members"][0]["returns"] != result["members"][1]["returns"]  # two policies, not one twice
    assert "member" in printed and f"{result['members'][1]['return_mean']:.1f}" in printed and str(out) in printed


def test_stochastic_episodes_differ_from_deterministic_ones_and_repeat_with_the_key(runs):
    run = load_run(str(runs["single"]))
    learners = jax.tree.map(lambda x: x[None], policy_view(run.members[0].learner))
    deterministic, stochastic = (evaluate.mjx_program(run, 4, s) for s in (False, True))
    r = {
        "det": deterministic(learners, jax.random.PRNGKey(0))[0],
        "sto": stochastic(learners, jax.random.PRNGKey(0))[0],
        "sto_again": stochastic(learners, jax.random.PRNGKey(0))[0],
        "sto_key": stochastic(learners, jax.random.PRNGKey(1))[0],
    }
    r = {k: np.asarray(v).tolist() for k, v in r.items()}
    assert r["sto"] == r["sto_again"] and r["sto"] != r["det"] and r["sto"] != r["sto_key"]


def test_mujoco_evaluation_runs_the_policy_file_in_gymnasiums_task(runs, capsys):
    """No policy file yet (the tiny run did not train): it is exported, then run in InvertedPendulum-v5."""
    printed = _evaluate(capsys, runs["single"], "--sim", "mujoco", "--episodes", 2)
    result = json.loads((runs["single"] / "evaluation_mujoco.json").read_text())
    assert (runs["single"] / export.FILE_NAME).is_file()
    assert result["physics"] == "MuJoCo C (InvertedPendulum-v5)" and "MuJoCo C" in printed
    row = result["members"][0]
    # 1 per step the pole stays up (v5 pays nothing for the step it falls), episodes of at most 40 steps
    assert all(1 <= n <= 40 and n - 1 <= r <= n for r, n in zip(row["returns"], row["lengths"], strict=True))


def test_mujoco_episodes_follow_the_policy(monkeypatch):
    """A constant push makes the pendulum's cart run off: episodes end sooner than with no push."""

    class Push:
        def __init__(self, u):
            self.u = u

        def act(self, obs):
            return np.full(1, self.u, np.float32)

    still = evaluate.mujoco_episodes(Push(0.0), "InvertedPendulum-v5", 2, seed=0, episode_length=200)
    pushed = evaluate.mujoco_episodes(Push(3.0), "InvertedPendulum-v5", 2, seed=0, episode_length=200)
    assert np.all(pushed["length"] < still["length"]), (pushed, still)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--episodes", "0"], "--episodes 0: must be at least 1"),
        (["--sim", "mujoco", "--stochastic"], "apply to --sim mjx"),
        (["--sim", "bullet"], "invalid choice: 'bullet'"),
        (["--video", "clip.gif"], "--video 'clip.gif': use a .mp4 file name"),
    ],
)
def test_bad_flags_exit_2_with_one_line(argv, message, runs, capsys):
    with pytest.raises(SystemExit) as e:
        evaluate.main([str(runs["single"]), *argv])
    err = capsys.readouterr().err
    assert e.value.code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_a_directory_without_a_run_exits_2(tmp_path, capsys):
    for path, message in ((tmp_path / "none", "is not a directory"), (tmp_path, "holds no run")):
        with pytest.raises(SystemExit) as e:
            evaluate.main([str(path)])
        err = capsys.readouterr().err
        assert e.value.code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_checkpoint_flag_evaluates_best_and_step_n_and_exports_them_beside_the_run(tmp_path, capsys):
    """best.ckpt and step-N.ckpt hold other policies than latest.ckpt: `--checkpoint` evaluates the one it names,
    writes evaluation_<sim>_<name>.json, and exports its policy file under exports/<name>/, leaving the run's own
    policy.npz (latest) as it was."""
    run = tmp_path / "run"
    tiny_run_dir(run, "dsac-e", 0, extra=(checkpoint.BEST, checkpoint.file_name("step-40")))
    returns, plain_evaluate = {}, None
    for which in ("latest", "best", "step-40"):
        _evaluate(capsys, run, "--episodes", EPISODES, "--checkpoint", which)
        name = "evaluation_mjx.json" if which == "latest" else f"evaluation_mjx_{which}.json"
        result = json.loads((run / name).read_text())
        assert result["checkpoint"] == which
        returns[which] = result["members"][0]["returns"]
        loaded = load_run(str(run), which=which)
        # one run, one config: the first load's evaluation program serves every checkpoint's learner (one compile)
        plain_evaluate = plain_evaluate or jax.jit(loaded.fns.evaluate)
        plain = plain_evaluate(loaded.members[0].learner, jax.random.PRNGKey(0))
        assert result["members"][0]["return_mean"] == pytest.approx(float(plain["eval/episode_return"]), rel=1e-6)
    assert returns["latest"] != returns["best"] and returns["best"] != returns["step-40"]  # three policies
    _evaluate(capsys, run, "--sim", "mujoco", "--episodes", 1, "--checkpoint", "best")
    best_file = run / export.EXPORTS_DIR / "best" / export.FILE_NAME
    assert best_file.is_file() and not (run / export.FILE_NAME).exists()  # nothing of latest's is written
    assert export.NumpyPolicy.load(str(best_file)).meta["checkpoint"] == "best"
    assert json.loads((run / "evaluation_mujoco_best.json").read_text())["checkpoint"] == "best"


@pytest.mark.parametrize(
    "which, message",
    [
        ("step-x", "--checkpoint 'step-x': allowed: latest (default), best"),
        ("newest", "--checkpoint 'newest': allowed: latest (default), best"),
        ("best", "has no best.ckpt; it has: latest"),
        ("step-5", "has no step-000000000005.ckpt; it has: latest"),
    ],
)
def test_a_checkpoint_the_run_does_not_have_exits_2_naming_the_ones_it_has(which, message, runs, capsys):
    for sim in ("mjx", "mujoco"):
        with pytest.raises(SystemExit) as e:
            evaluate.main([str(runs["single"]), "--checkpoint", which, "--sim", sim])
        err = capsys.readouterr().err
        assert e.value.code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (runs["single"] / export.EXPORTS_DIR).exists()
