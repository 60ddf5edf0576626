"""The tested range of the numerical stack; importing mjx_tecrl outside it warns once, naming what is supported.

Lower bounds are pyproject.toml's (the versions this project was developed and tested with). Upper bounds are
the next minor release, exclusive: JAX, flax, optax and brax are pre-1.0 and change behaviour in minor
releases, and MJX (mujoco-mjx) moves with MuJoCo's minor releases, so only patch releases of the tested minors
count as tested. Outside the range mjx_tecrl still imports; it warns, because results may differ or fail.
"""

from __future__ import annotations

import importlib.metadata
import re
import warnings
from collections.abc import Callable

# distribution: (lowest tested, first untested)
TESTED = {
    "jax": ("0.10.2", "0.11"),
    "jaxlib": ("0.10.2", "0.11"),
    "mujoco": ("4.0.0", "4.1"),
    "mujoco-mjx": ("3.17.0", "3.18"),
    "flax": ("0.12.8", "0.13"),
    "optax": ("0.2.8", "0.3"),
    "brax": ("0.14.2", "0.15"),
}


class UnsupportedVersionWarning(UserWarning):
    """An installed dependency lies outside the range mjx_tecrl was tested with."""


def installed_version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _release(version: str) -> tuple[int, ...]:
    """The numeric release part: '0.10.2' -> (0, 10, 2); '0.10.3rc1' and '0.10.2.dev2025' -> (0, 10, 3), (0, 10, 2)."""
    parts = []
    for piece in version.split("."):
        m = re.match(r"\d+", piece)
        if not m:
            break
        parts.append(int(m.group()))
        if m.end() < len(piece):  # '3rc1': the release part ends here
            break
    return tuple(parts)


def supported_text() -> str:
    return ", ".join(f"{d} >={lo},<{hi}" for d, (lo, hi) in TESTED.items())


def outside(lookup: Callable[[str], str | None] = installed_version) -> list[str]:
    """'name version' for each installed distribution outside its tested range (missing ones are skipped)."""
    found = []
    for dist, (lo, hi) in TESTED.items():
        v = lookup(dist)
        if v is not None and not (_release(lo) <= _release(v) < _release(hi)):
            found.append(f"{dist} {v}")
    return found


_warned = False


def check_versions(lookup: Callable[[str], str | None] = installed_version) -> str | None:
    """Warn (once per process) if a dependency is outside the tested range; returns the message, if any."""
    global _warned
    bad = outside(lookup)
    if not bad:
        return None
    message = (
        f"mjx_tecrl is tested with {supported_text()}; found {', '.join(bad)}, outside that range: results may "
        "differ or fail"
    )
    if not _warned:
        _warned = True
        warnings.warn(message, UnsupportedVersionWarning, stacklevel=3)
    return message
