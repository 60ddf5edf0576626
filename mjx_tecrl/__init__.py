"""DSAC-E on MuJoCo MJX. Importing the package checks the numerical stack's versions (see `_versions`) and guards
MJX's CPU linear algebra against jaxlib 0.10's LAPACK deadlock (see `_lapack_cpu`)."""

from mjx_tecrl._lapack_cpu import install as _install_lapack_guard
from mjx_tecrl._versions import check_versions as _check_versions

_check_versions()
_install_lapack_guard()
