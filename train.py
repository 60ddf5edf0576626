"""Train a DSAC-E agent: `python train.py --help` lists every flag (also `mjx-tecrl-train`, `python -m mjx_tecrl`)."""

import sys

from mjx_tecrl.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
