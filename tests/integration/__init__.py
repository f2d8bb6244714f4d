# Integration tests: they run against real MariaDB servers (see tests/support/mariadb.py).
