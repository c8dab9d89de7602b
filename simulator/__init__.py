"""A FreeSWITCH simulator speaking the real Event Socket protocol (see ``server``)."""
from .calls import LoadProfile
from .server import Config, Simulator

__all__ = ["Config", "LoadProfile", "Simulator"]
