"""The pure middle: a client's and a backend's session state and what it means.

`core/` holds state and decisions, never I/O: session state and how to bring
one backend to a client's (session.py), the state that pins a client to its
backend (pins.py), prepared statements and the backends' statement caches
(statements.py), the hidden read-back of state the trackers do not report
(capture.py), what the server told about itself (server_info.py), and the
connection states with their transition tables (states.py). It imports only
`protocol/`, `constants`, `errors` and `reasons`; tests/test_layering.py checks
that nothing here imports asyncio, sockets or aiomysql.
"""
