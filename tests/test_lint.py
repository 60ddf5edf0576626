"""The project's lint rules hold, so that CI keeps them: ruff's checks (pyproject.toml's [tool.ruff], the
cyclomatic-complexity limit of 15 among them) and its formatting, over the whole checkout."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _ruff(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ruff", *args], cwd=ROOT, capture_output=True, text=True)


def test_ruff_check_passes_with_the_complexity_limit():
    proc = _ruff("check", ".", "--output-format", "concise")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_complexity_limit_is_in_force(tmp_path):
    """The limit could be off (a config that drops C901): a function of complexity 16 must fail the check."""
    branches = "".join(f"    if x == {i}:\n        return {i}\n" for i in range(15))
    bad = tmp_path / "complex.py"
    bad.write_text(f"def f(x):\n{branches}    return -1\n")
    proc = _ruff("check", str(bad), "--config", str(ROOT / "pyproject.toml"), "--output-format", "concise")
    assert proc.returncode == 1 and "C901" in proc.stdout and "(16 > 15)" in proc.stdout, proc.stdout


def test_ruff_format_leaves_every_file_as_it_is():
    proc = _ruff("format", "--check", ".")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_modules_stay_small():
    """Issue 19's sizes: the host loop (run.py) under 300 lines, no module of mjx_tecrl/ or envs/ over 400."""
    sizes = {p.relative_to(ROOT).as_posix(): len(p.read_text().splitlines())
             for d in ("mjx_tecrl", "envs") for p in (ROOT / d).glob("*.py")}  # fmt: skip
    assert sizes["mjx_tecrl/run.py"] < 300, sizes["mjx_tecrl/run.py"]
    assert {p: n for p, n in sizes.items() if n > 400} == {}
