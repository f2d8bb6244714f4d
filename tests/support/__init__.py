# Test support code (no tests here): throwaway MariaDB servers (mariadb.py)
# and TCP helpers (net.py). Import the modules directly, e.g.
# `from tests.support.mariadb import MariaDBServer`.
