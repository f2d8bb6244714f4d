"""`python -m mysqlpool_proxy` runs the mysqlpool-proxy command."""

import sys

from mysqlpool_proxy.cli import main

if __name__ == "__main__":
    sys.exit(main())
