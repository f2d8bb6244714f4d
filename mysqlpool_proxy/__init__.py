"""mysqlpool-proxy: a MySQL wire-protocol proxy that pools backend connections.

Clients connect to the proxy as if it were the server; the proxy multiplexes
them at transaction boundaries onto a small, capped pool of backend
connections that it recycles before the server would drop them.

`BUILD` says which code runs: "compiled" where the hot path was compiled
with mypyc when the package was built (setup.py), "pure Python" otherwise.
"""

from importlib.machinery import EXTENSION_SUFFIXES
from importlib.util import find_spec

__version__ = "0.1.0"


def _build() -> str:
    spec = find_spec(".protocol.framing", __name__)  # one of the compiled modules: compiled all or none
    origin = spec.origin if spec is not None else None
    return "compiled" if origin is not None and origin.endswith(tuple(EXTENSION_SUFFIXES)) else "pure Python"


BUILD = _build()
