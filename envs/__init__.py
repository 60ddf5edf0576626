"""Task registry and environment wrappers, installed as `mjx_tecrl.envs`."""

from mjx_tecrl.envs.registry import EnvSpec, UnknownEnvError, list_envs, make, spec

__all__ = ["EnvSpec", "UnknownEnvError", "list_envs", "make", "spec"]
