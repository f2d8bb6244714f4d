"""PeakSampler: the most connections of one account the server held at once during a run.

Tests that bound the proxy's server connections (pool caps, workers, multiplexing) sample the
server's process list from their own connection all through the run.
"""

from __future__ import annotations

import threading
from contextlib import closing


class PeakSampler(threading.Thread):
    """The server's connections of `user`, sampled until stopped: the peak count, and the rows seen then.

    A connection counts when two samples INTERVAL apart both show it. The server closes a
    connection's socket (which is when the proxy frees its slot) a moment before the thread leaves
    the process list, and it has stopped counting it against the account's limits by then; a
    connection the proxy held past its cap would be in both samples."""

    INTERVAL = 0.02  # seconds between samples: it samples all through the run, not waiting for anything

    def __init__(self, server, user):
        super().__init__(daemon=True)
        self.server, self.user, self.peak, self.at_peak = server, user, 0, ()
        self._halt = threading.Event()

    def run(self):
        previous: set = set()
        with closing(self.server.connect()) as conn, conn.cursor() as cur:
            while not self._halt.is_set():
                cur.execute("SELECT ID, COMMAND, TIME, STATE, INFO FROM information_schema.PROCESSLIST "
                            "WHERE USER = %s", (self.user,))
                rows = cur.fetchall()
                lasting = [row for row in rows if row[0] in previous]
                if len(lasting) > self.peak:
                    self.peak, self.at_peak = len(lasting), rows
                previous = {row[0] for row in rows}
                self._halt.wait(self.INTERVAL)

    def stop(self):
        self._halt.set()
        self.join(5)
        return self.peak
