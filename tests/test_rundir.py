"""The run directory's one owner (mjx_tecrl/rundir.py): what marks a run, where members' files go, and the one-line
errors every command that reads a run gives for a missing or broken config.json, sweep.json or checkpoint name."""

from __future__ import annotations

import json

import pytest

from mjx_tecrl import checkpoint, rundir
from mjx_tecrl.config import ConfigError, make_config


def test_layout_paths(tmp_path):
    run = str(tmp_path)
    assert rundir.member_dir(run, 7) == str(tmp_path / "members" / "m007")
    assert rundir.metrics_dir(run) == run and rundir.metrics_dir(run, 2) == rundir.member_dir(run, 2)
    assert rundir.checkpoints_dir(run) == str(tmp_path / "checkpoints")
    assert not rundir.holds_run(run)
    (tmp_path / rundir.CONFIG_FILE).write_text(json.dumps(make_config(env="hopper").to_dict()))
    assert rundir.holds_run(run) and rundir.read_config(run).env == "hopper" and rundir.read_sweep(run) is None


@pytest.mark.parametrize(
    "content, message",
    [(None, "holds no run (no config.json)"), ("{not json", "config.json is unreadable"),
     (json.dumps({"env": "hopper", "nope": 1}), "config.json: unknown config keys ['nope']")],
)  # fmt: skip
def test_a_missing_or_broken_config_is_one_line_naming_where(tmp_path, content, message):
    if content is not None:
        (tmp_path / rundir.CONFIG_FILE).write_text(content)
    for where, prefix in (("", repr(str(tmp_path))), (f"--resume {str(tmp_path)!r}", "--resume ")):
        with pytest.raises(ConfigError) as e:
            rundir.read_config(str(tmp_path), where)
        assert str(e.value).startswith(prefix) and message in str(e.value) and "\n" not in str(e.value)


def test_a_sweep_members_hyperparameters_fill_in_from_the_config(tmp_path):
    config = make_config(env="hopper", rho=2.0, actor_lr=1e-3)
    hp = rundir.member_hyperparams(config, {"member": 0, "seed": 1, "hyperparams": {"rho": 0.5}})
    assert hp["rho"] == 0.5 and hp["actor_lr"] == pytest.approx(1e-3) and all(isinstance(v, float) for v in hp.values())
    (tmp_path / rundir.SWEEP_FILE).write_text("[")
    with pytest.raises(ConfigError, match="sweep.json is unreadable"):
        rundir.read_sweep(str(tmp_path))


def test_checkpoint_names(tmp_path):
    assert [checkpoint.file_name(w) for w in ("latest", "best", "step-5000")] == [
        checkpoint.LATEST, checkpoint.BEST, "step-000000005000.ckpt"]  # fmt: skip
    for bad in ("step-", "step--1", "5000", "Latest"):
        with pytest.raises(ValueError, match="allowed: latest"):
            checkpoint.file_name(bad)
    ckpt = tmp_path / "checkpoints"
    ckpt.mkdir()
    for name in (checkpoint.LATEST, "step-000000010000.ckpt", "step-000000005000.ckpt", "replay-000000010000.ckpt"):
        (ckpt / name).write_bytes(b"")
    assert checkpoint.available(str(ckpt)) == ["latest", "step-5000", "step-10000"]
    assert rundir.checkpoint_file(str(tmp_path), "step-5000") == "step-000000005000.ckpt"
    with pytest.raises(ConfigError, match="has no best.ckpt; it has: latest, step-5000, step-10000"):
        rundir.checkpoint_file(str(tmp_path), "best")
