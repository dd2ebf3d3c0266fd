"""PostgreSQL access: pool factory, migrations, and which errors mean an outage."""

from .errors import unavailable
from .migrate import Migration, MigrationError, applied_migrations, load_migrations, migrate
from .pool import Connection, create_pool

__all__ = [
    "Connection",
    "Migration",
    "MigrationError",
    "applied_migrations",
    "create_pool",
    "load_migrations",
    "migrate",
    "unavailable",
]
