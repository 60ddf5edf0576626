"""The persistent compilation cache (`--compile-cache`, `--no-compile-cache`): where it goes, and that a bad
directory degrades to compiling with one warning."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

from mjx_tecrl import cli, compile_cache

TRAIN = str(Path(__file__).resolve().parents[1] / "train.py")


def test_the_flag_wins_then_the_environment_then_the_per_user_default(monkeypatch, tmp_path):
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", "/from/env")
    assert compile_cache.resolve("/from/flag") == "/from/flag"
    assert compile_cache.resolve(None) == "/from/env"
    assert compile_cache.resolve("/from/flag", enabled=False) is None
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert compile_cache.resolve(None) == str(tmp_path / "mjx_tecrl" / "xla")


def test_the_flags_parse_outside_the_config():
    args = cli.parse(["--compile-cache", "/c", "--gamma", "0.9"])
    assert args.compile_cache == "/c" and not args.no_compile_cache and "compile_cache" not in args.overrides
    assert cli.parse(["--no-compile-cache"]).no_compile_cache


def _in_subprocess(code: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)


def test_a_compile_writes_an_entry_that_a_second_process_reads(tmp_path):
    """Two processes compile the same function with the cache on: the first writes entries, the second adds none
    (it loaded them). In subprocesses, so that this test process's JAX keeps its own settings."""
    code = (
        "from mjx_tecrl import compile_cache; compile_cache.MIN_COMPILE_SECONDS = 0.0\n"
        f"assert compile_cache.enable({str(tmp_path)!r}) == {str(tmp_path)!r}\n"
        "import jax, jax.numpy as jnp\n"
        "print(float(jax.jit(lambda x: jnp.sin(x) * 3 + jnp.cumsum(x)[-1])(jnp.arange(5.0))[0]))\n"
    )
    first = _in_subprocess(code)
    assert first.returncode == 0, first.stderr
    entries = sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("."))
    assert entries
    second = _in_subprocess(code)
    assert second.returncode == 0 and second.stdout == first.stdout
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == entries


def test_an_unusable_directory_warns_once_and_compiles_without_it(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    code = (
        "import sys, jax\n"
        "from mjx_tecrl import compile_cache\n"
        f"assert compile_cache.enable({str(blocker / 'cache')!r}) is None\n"
        "assert jax.config.jax_compilation_cache_dir is None\n"
        "print(jax.jit(lambda x: x + 1)(1))\n"
    )
    result = _in_subprocess(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "2"
    warnings = [ln for ln in result.stderr.splitlines() if "compilation cache" in ln]
    assert len(warnings) == 1 and "compiling without it" in warnings[0] and str(blocker) in warnings[0]


def test_enable_none_turns_the_cache_off(monkeypatch):
    import jax

    previous = jax.config.jax_compilation_cache_dir
    try:
        assert compile_cache.enable(None, warn=io.StringIO()) is None
        assert jax.config.jax_compilation_cache_dir is None
    finally:
        jax.config.update("jax_compilation_cache_dir", previous)
