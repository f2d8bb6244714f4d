"""mysqlpool-proxy: a MySQL wire-protocol proxy that pools backend connections.

Clients connect to the proxy as if it were the server; the proxy multiplexes
them at transaction boundaries onto a small, capped pool of backend
connections that it recycles before the server would drop them.
"""

__version__ = "0.1.0"
