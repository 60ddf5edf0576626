"""Task registry and environment wrappers, installed as `mjx_tecrl.envs`."""

from mjx_tecrl.envs.registry import EnvFactoryError, EnvSpec, UnknownEnvError, list_envs, make, register, spec

__all__ = ["EnvFactoryError", "EnvSpec", "UnknownEnvError", "list_envs", "make", "register", "spec"]
