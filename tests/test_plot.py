"""mjx_tecrl.plot: grouping, the 95% interval, the figure's pixels, and bad input (exit 2, nothing written)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from mjx_tecrl import plot
from mjx_tecrl.config import Config, ConfigError

# The subprocesses here exec a new interpreter at once; JAX's fork warning does not apply.
pytestmark = pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")

COLUMNS = ["env_steps", "wall_time_s", "eval/episode_return", "train/alpha", "train/policy_entropy",
           "train/trajectory_entropy", "train/entropy_budget", "train/q_e"]  # fmt: skip


def _write_metrics(path, steps, returns, budget=-100.0, walls=None) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        for i, (s, r) in enumerate(zip(steps, returns, strict=True)):
            wall = walls[i] if walls is not None else 10.0 + s / 100
            w.writerow([s, wall, r, 0.5 / (i + 1), -1.0 + 0.01 * i, budget + i, budget, budget + 1 + i])


def _config(**kw) -> dict:
    return {**Config(env="inverted_pendulum", hidden_sizes=(16,)).to_dict(), **kw}


def fake_single_run(root, name="single", algo="dsac-e", seed=0, returns=(10, 50, 200, 400)):
    d = os.path.join(root, name)
    os.makedirs(d)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(_config(algo=algo, seed=seed), f)
    _write_metrics(os.path.join(d, "metrics.csv"), [1000, 2000, 3000, 4000], list(returns))
    return d


def fake_sweep(root, name="sweep", rhos=(0.5, 2.0), seeds=(0, 1)):
    """A sweep directory in the layout of mjx_tecrl.policy: sweep.json and members/mNNN/metrics.csv."""
    from mjx_tecrl.rundir import member_dir

    d = os.path.join(root, name)
    os.makedirs(d)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(_config(), f)
    members = []
    for i, (rho, seed) in enumerate((r, s) for r in rhos for s in seeds):
        members.append({"member": i, "seed": seed, "hyperparams": {"rho": rho}})
        budget = rho * -1.0 / (1 - 0.99)
        _write_metrics(os.path.join(member_dir(d, i), "metrics.csv"), [1000, 2000, 3000],
                       [rho * 100 + seed, rho * 200 + seed, rho * 300 + seed], budget=budget)  # fmt: skip
    with open(os.path.join(d, "sweep.json"), "w") as f:
        json.dump({"members": members}, f)
    return d


def test_sweep_members_are_curves_grouped_by_the_varying_hyperparameter(tmp_path):
    curves = plot.load_curves(fake_sweep(str(tmp_path)))
    assert [c.settings["rho"] for c in curves] == [0.5, 0.5, 2.0, 2.0]
    assert [c.settings["seed"] for c in curves] == [0, 1, 0, 1]
    names = plot.resolve_group_by(curves, None)
    assert names == ["algo", "rho"]  # rho varies, so it is never averaged over
    groups = plot.group_curves(curves, names)
    assert list(groups) == ["algo=dsac-e, rho=0.5", "algo=dsac-e, rho=2"]
    assert [len(g) for g in groups.values()] == [2, 2]
    assert list(plot.group_curves(curves, plot.resolve_group_by(curves, "algo"))) == ["algo=dsac-e"]


def test_single_runs_group_by_algo_and_seeds_pool(tmp_path):
    runs = [fake_single_run(str(tmp_path), f"r{s}", seed=s) for s in range(2)]
    runs.append(fake_single_run(str(tmp_path), "sac", algo="sac"))
    curves = [c for r in runs for c in plot.load_curves(r)]
    groups = plot.group_curves(curves, plot.resolve_group_by(curves, None))
    assert {k: len(v) for k, v in groups.items()} == {"algo=dsac-e": 2, "algo=sac": 1}


def test_a_setting_a_run_did_not_record_is_labelled_so(tmp_path):
    """A run recorded before a hyperparameter existed lacks it in config.json: labelled 'not recorded', not None
    and not today's default."""
    old = fake_single_run(str(tmp_path), "old")
    config = json.load(open(os.path.join(old, "config.json")))
    del config["entropy_floor"]
    json.dump(config, open(os.path.join(old, "config.json"), "w"))
    new = fake_single_run(str(tmp_path), "new")
    with open(os.path.join(new, "config.json"), "w") as f:
        json.dump(_config(entropy_floor=1.0), f)
    curves = [c for r in (old, new) for c in plot.load_curves(r)]
    assert list(plot.group_curves(curves, plot.resolve_group_by(curves, None))) == [
        "algo=dsac-e, entropy_floor=not recorded",
        "algo=dsac-e, entropy_floor=1",
    ]


def test_mean_and_bootstrap_interval_match_a_hand_computation():
    """Resampling two seeds gives the means a, (a+b)/2, b with chances 1/4, 1/2, 1/4, so the 2.5% and 97.5%
    quantiles are the two seeds themselves; with three seeds all three draws are the lowest one 1 time in 27
    (3.7% > 2.5%), so the bounds are again the extreme seeds."""
    x = np.array([0.0, 1.0, 2.0])
    ys = [np.array([1.0, 2.0, 3.0]), np.array([3.0, 2.0, 5.0]), np.array([2.0, 5.0, 4.0])]
    grid, mean, low, high = plot.mean_interval([x, x], ys[:2])
    np.testing.assert_array_equal(grid, x)
    np.testing.assert_allclose(mean, [2.0, 2.0, 4.0])
    np.testing.assert_allclose(low, [1.0, 2.0, 3.0])
    np.testing.assert_allclose(high, [3.0, 2.0, 5.0])
    grid, mean, low, high = plot.mean_interval([x, x, x], ys)
    np.testing.assert_allclose(mean, [2.0, 3.0, 4.0])
    np.testing.assert_allclose(low, [1.0, 2.0, 3.0])
    np.testing.assert_allclose(high, [3.0, 5.0, 5.0])


def test_interval_on_different_grids_uses_their_overlap_and_drops_nan():
    a = (np.array([0.0, 10.0, 20.0]), np.array([0.0, 10.0, 20.0]))
    b = (np.array([5.0, 15.0, 25.0, 30.0]), np.array([5.0, 15.0, np.nan, 30.0]))
    grid, mean, low, high = plot.mean_interval([a[0], b[0]], [a[1], b[1]], points=11)
    np.testing.assert_allclose(grid, np.linspace(5.0, 20.0, 11))
    np.testing.assert_allclose(mean, grid)  # both curves are y = x on the overlap
    np.testing.assert_allclose(high - low, 0.0, atol=1e-12)
    single = plot.mean_interval([a[0]], [a[1]])
    np.testing.assert_array_equal(single[1], single[2])  # one seed: no band


def test_budget_falls_back_to_rho_h0_over_one_minus_gamma():
    metrics = {"train/target_entropy": np.array([-3.0, -3.0])}
    curve = plot.Curve("x", {"rho": 2.0, "gamma": 0.9}, metrics)
    assert curve.budget() == pytest.approx(2.0 * -3.0 / 0.1)
    logged = plot.Curve("y", {"rho": 1.0, "gamma": 0.99}, {"train/entropy_budget": np.array([-100.0])})
    assert logged.budget() == -100.0 and logged.target_entropy() == pytest.approx(-1.0)
    # the lived budget rho * H0 * (1 + D): H0 = -3 from a budget of -2 * 3 * (1 + 49) and D = 49
    metrics = {"train/entropy_budget": np.array([-300.0]), "diag/horizon": np.array([40.0, 49.0])}
    lived = plot.Curve("z", {"rho": 2.0, "gamma": 0.99, "budget_horizon": "lived"}, metrics)
    assert lived.target_entropy() == pytest.approx(-3.0)


def _pixels(path):
    from matplotlib import image

    return image.imread(path)[..., :3]


def test_plot_command_writes_a_png_that_is_not_blank(tmp_path):
    single, sweep = fake_single_run(str(tmp_path)), fake_sweep(str(tmp_path))
    out = tmp_path / "curves.png"
    assert plot.main([single, sweep, "--out", str(out), "--group-by", "rho"]) == 0
    px = _pixels(str(out))
    assert px.shape[0] > 300 and px.shape[1] > 600
    not_white = np.any(px < 0.9, axis=-1).mean()
    assert not_white > 0.02  # axes, text, curves
    # the default colours of the first groups, C0 (#1f77b4) and C1 (#ff7f0e), are drawn as lines
    for rgb in ((0x1F, 0x77, 0xB4), (0xFF, 0x7F, 0x0E)):
        near = np.all(np.abs(px - np.array(rgb) / 255.0) < 0.03, axis=-1)
        assert near.sum() > 100, rgb


def test_plot_through_python_dash_m(tmp_path):
    out = tmp_path / "c.png"
    run = fake_single_run(str(tmp_path))
    result = subprocess.run([sys.executable, "-m", "mjx_tecrl.plot", run, "--out", str(out)],
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert out.stat().st_size > 10_000 and np.any(_pixels(str(out)) < 0.5)


@pytest.mark.parametrize(
    "case, needle",
    [
        ("missing", "is not a directory"),
        ("noconfig", "no config.json"),
        ("nometrics", "metrics.csv"),
        ("headeronly", "holds no evaluations"),
        ("badgroup", "--group-by 'nonsense'"),
        ("badext", "--out"),
        ("badmember", "members/m001/metrics.csv"),
    ],
)
def test_bad_input_is_one_line_and_exit_2_and_writes_nothing(tmp_path, capsys, case, needle):
    good = fake_single_run(str(tmp_path))
    out = tmp_path / "curves.png"
    args = {"missing": [str(tmp_path / "nope")], "noconfig": [str(tmp_path)], "badgroup": [good]}.get(case, [good])
    extra = ["--group-by", "nonsense"] if case == "badgroup" else []
    if case == "badext":
        out = tmp_path / "curves.txt"
    if case == "nometrics":
        os.remove(os.path.join(good, "metrics.csv"))
    if case == "headeronly":
        with open(os.path.join(good, "metrics.csv"), "w") as f:
            f.write(",".join(COLUMNS) + "\n")
    if case == "badmember":
        sweep = fake_sweep(str(tmp_path))
        os.remove(os.path.join(sweep, "members", "m001", "metrics.csv"))
        args = [sweep]
    with pytest.raises(SystemExit) as exc:
        plot.main([*args, "--out", str(out), *extra])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("plot: error:") and needle in err, err
    assert not out.exists()
    if case == "badgroup":
        assert "rho" in err and "algo" in err  # it lists what is allowed


def test_load_curves_raises_config_error_not_traceback(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match="unreadable"):
        plot.load_curves(str(tmp_path))
