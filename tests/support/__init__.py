# Test support code (no tests here): throwaway MariaDB servers (mariadb.py),
# TCP helpers (net.py) and a fault-injecting TCP relay (faults.py). Import the
# modules directly, e.g.
# `from tests.support.mariadb import MariaDBServer`.
