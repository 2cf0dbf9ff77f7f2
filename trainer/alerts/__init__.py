"""The monitor: online metrics and the health of the stream, judged against a baseline.

``checks`` holds the statistics (pure), ``figures`` reads what is judged (Redis counters, the
workers' lag reports, the DLQ, the promotion history), ``store`` keeps the alerts (one open
per episode), and ``monitor`` ties them together: ``streamrec monitor`` and the scheduler of
``streamrec up`` run it.
"""
