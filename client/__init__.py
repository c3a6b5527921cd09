"""Plateau's Python SDK (`client.sdk`) and command line (`client.cli`, installed as `plateau`)."""

from client.sdk import TERMINAL, PlateauClient, PlateauConnectionError, PlateauError, ServerEvent

__all__ = ["TERMINAL", "PlateauClient", "PlateauConnectionError", "PlateauError", "ServerEvent"]
