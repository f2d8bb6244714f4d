"""The proxy: clients, pools and the server's identity, tied together (see proxy.py)."""

from .proxy import Proxy, ProxyState, UserEntry

__all__ = ["Proxy", "ProxyState", "UserEntry"]
