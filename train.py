"""Train a DSAC-E agent: `python train.py --help` lists every flag."""

import sys

from mjx_tecrl.cli import main

if __name__ == "__main__":
    sys.exit(main())
