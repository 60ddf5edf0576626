"""Train a DSAC-E agent: `python train.py --help` lists every flag."""

import sys

from mjx_tecrl import interrupt

if __name__ == "__main__":
    with interrupt.until_training():  # Ctrl-C before the first chunk, compiles included: exit 130 at once
        from mjx_tecrl.cli import main

        code = main()
    sys.exit(code)
