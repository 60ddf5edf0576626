"""DSAC-E on MuJoCo MJX. Importing the package checks the numerical stack's versions (see `_versions`)."""

from mjx_tecrl._versions import check_versions as _check_versions

_check_versions()
