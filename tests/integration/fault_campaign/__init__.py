"""The kill -9 fault campaign: the four services as processes, a flow, random SIGKILLs.

``server`` runs one service in its own process; ``fleet`` starts, kills and restarts
them; ``mail`` is the SMTP server that counts every message by its Message-ID;
``client`` retries as real senders do and remembers what ingest accepted; ``audit``
reads PostgreSQL and the topics afterwards; ``report`` turns the figures into the table
of ``docs/reliability.md``.
"""
