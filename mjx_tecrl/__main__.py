"""`python -m mjx_tecrl`, `mjx-tecrl-train` and `train.py`: one entry point (`main`)."""

import sys

from mjx_tecrl import interrupt


def main() -> int:
    """Train from the command line; a Ctrl-C before the first chunk (compiles included) exits 130 at once."""
    with interrupt.until_training():
        from mjx_tecrl.cli import main as cli_main

        return cli_main()


if __name__ == "__main__":
    sys.exit(main())
