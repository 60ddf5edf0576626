"""JAX's persistent compilation cache, on by default for `train.py`: a second run of the same program loads its
compiled executables instead of compiling them again.

The directory: `--compile-cache DIR`, else `$JAX_COMPILATION_CACHE_DIR`, else `default_dir()` (per user).
`--no-compile-cache` turns it off. A directory that cannot be created or written turns it off with one warning;
an unreadable or corrupt entry is JAX's to handle (it warns and compiles, `jax_raise_persistent_cache_errors`
being off), and so is a full disk on writing.
"""

from __future__ import annotations

import os
import sys
import tempfile

MIN_COMPILE_SECONDS = 0.5  # programs that compile faster are not worth a file


def default_dir() -> str:
    """`$XDG_CACHE_HOME/mjx_tecrl/xla`, or `~/.cache/mjx_tecrl/xla`."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "mjx_tecrl", "xla")


def resolve(directory: str | None, enabled: bool = True) -> str | None:
    """The directory to use: the flag's, the environment's, or the default; None when turned off."""
    if not enabled:
        return None
    return directory or os.environ.get("JAX_COMPILATION_CACHE_DIR") or default_dir()


def enable(directory: str | None, warn=sys.stderr) -> str | None:
    """Point JAX's persistent cache at `directory` (created if needed) and return it; None turns it off.

    A directory that cannot be created or written is not an error: one warning line, and the run compiles."""
    import jax

    if directory is None:
        jax.config.update("jax_compilation_cache_dir", None)
        return None
    try:
        os.makedirs(directory, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".probe-"):
            pass
    except OSError as e:
        print(
            f"warning: the compilation cache {directory!r} is not usable ({e.strerror or e}); compiling without it",
            file=warn,
        )
        jax.config.update("jax_compilation_cache_dir", None)
        return None
    jax.config.update("jax_compilation_cache_dir", directory)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return directory
