"""Importing mjx_tecrl with a dependency outside the tested range warns once, naming the supported versions."""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest

from mjx_tecrl import _versions

IN_RANGE = {"jax": "0.10.2", "jaxlib": "0.10.2", "mujoco": "4.0.0", "mujoco-mjx": "3.17.0", "flax": "0.12.8",
            "optax": "0.2.8", "brax": "0.14.2"}  # fmt: skip


def _lookup(**changed):
    versions = {**IN_RANGE, **{k.replace("_", "-"): v for k, v in changed.items()}}
    return versions.get


@pytest.fixture
def fresh(monkeypatch):
    monkeypatch.setattr(_versions, "_warned", False)


def test_the_installed_versions_are_in_range():
    assert _versions.outside() == []


@pytest.mark.parametrize(
    "changed",
    [{"jax": "0.10.3"}, {"jax": "0.10.2.dev20260101"}, {"jaxlib": "0.10.9rc1"}, {"mujoco": "4.0.5"}, {"brax": None}],
)
def test_patch_releases_and_missing_packages_do_not_warn(fresh, changed):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _versions.check_versions(_lookup(**changed)) is None


@pytest.mark.parametrize(
    "changed, named",
    [
        ({"jax": "0.4.30"}, "jax 0.4.30"),
        ({"jax": "0.11.0", "jaxlib": "0.11.0"}, "jax 0.11.0, jaxlib 0.11.0"),
        ({"mujoco": "3.2.7"}, "mujoco 3.2.7"),
        ({"mujoco_mjx": "3.18.0"}, "mujoco-mjx 3.18.0"),
        ({"flax": "0.13.0"}, "flax 0.13.0"),
        ({"optax": "0.2.3"}, "optax 0.2.3"),
    ],
)
def test_a_version_outside_the_range_warns_naming_it_and_the_supported_ones(fresh, changed, named):
    with pytest.warns(_versions.UnsupportedVersionWarning) as record:
        message = _versions.check_versions(_lookup(**changed))
    assert len(record) == 1 and str(record[0].message) == message
    assert f"found {named}, outside that range" in message
    for dist, (lo, hi) in _versions.TESTED.items():
        assert f"{dist} >={lo},<{hi}" in message


def test_warns_once_per_process(fresh):
    with pytest.warns(_versions.UnsupportedVersionWarning) as record:
        _versions.check_versions(_lookup(jax="0.4.30"))
        _versions.check_versions(_lookup(jax="0.4.30"))
    assert len(record) == 1


_IMPORT_WITH = """
import importlib.metadata as md
real = md.version
md.version = lambda dist: {fake!r}.get(dist) or real(dist)
import mjx_tecrl, mjx_tecrl._versions
import importlib; importlib.reload(mjx_tecrl)
"""


@pytest.mark.parametrize("fake, expected", [({}, 0), ({"jax": "0.4.30", "mujoco": "3.1.0"}, 1)])
def test_importing_the_package_checks_the_versions(fake, expected):
    """The real import path, in a fresh interpreter whose version lookup is patched (reloading warns no more)."""
    proc = subprocess.run([sys.executable, "-c", _IMPORT_WITH.format(fake=fake)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("UnsupportedVersionWarning") == expected, proc.stderr
    if expected:
        assert "found jax 0.4.30, mujoco 3.1.0, outside that range" in proc.stderr
        assert "jax >=0.10.2,<0.11" in proc.stderr


def test_importing_the_run_modules_leaves_the_xla_backend_uninitialised():
    """cli.main imports run (and with it health and memory) before `jax.distributed.initialize`, which
    refuses to run once any JAX call has started a backend."""
    code = (
        "import mjx_tecrl.run, mjx_tecrl.health, mjx_tecrl.memory\n"
        "from jax._src import xla_bridge\n"
        "assert not xla_bridge.backends_are_initialized()\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
