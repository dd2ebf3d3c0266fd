"""A PostgreSQL server of a test's own, to stop, kill and fill without disturbing others.

Same system binaries and the same ``initdb`` / ``pg_ctl`` steps as the local stack
(``shared.stack.postgres``: as root the server runs as the ``postgres`` user), in a
throwaway directory next to the stack's, on a free port. ``stop`` is a fast shutdown,
``kill`` a ``kill -9`` of the postmaster; ``start`` brings it back on the same data
directory (after a kill, through crash recovery).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from shared.settings import Settings
from shared.stack.postgres import Postgres


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _processes_in(directory: Path) -> list[int]:
    """Processes working in ``directory``: every process of a cluster works in its data dir."""
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "cwd").resolve(strict=True) == directory:
                    found.append(int(entry.name))
    return found


class PrivatePostgres:
    """One private cluster; its ``trayecto`` database is created on the first start."""

    def __init__(self, settings: Settings) -> None:
        port = _free_port()
        self.settings = settings.model_copy(
            update={
                "database_url": f"postgresql://trayecto@127.0.0.1:{port}/trayecto",
                "stack_dir": settings.stack_dir.parent / f"test-postgres-{uuid.uuid4().hex[:8]}",
            }
        )
        self.server = Postgres(self.settings)

    @property
    def dsn(self) -> str:
        return self.settings.database_url

    @property
    def log(self) -> Path:
        return self.server.log

    def prepare(self) -> None:
        self.server.prepare()

    def start(self) -> None:
        """Start on the data directory and wait until it accepts connections."""
        self.server.start()

    def stop(self) -> None:
        """``pg_ctl stop -m fast``: sessions are ended, transactions rolled back."""
        self.server.stop()

    def kill(self, timeout_s: float = 20.0) -> None:
        """``kill -9`` of the postmaster, then wait until its processes are all gone.

        Backends and auxiliary processes notice the postmaster's death and exit on
        their own. A new postmaster refuses to start while one of them still holds the
        old shared memory, or while the old postmaster's pid exists (even as a zombie
        not yet reaped), so this waits for both; leftovers after ``timeout_s`` are killed.
        """
        pid = self.server.pid()
        if pid is None:
            return
        data = self.server.data.resolve()
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + timeout_s
        while (left := _processes_in(data)) or Path(f"/proc/{pid}").exists():
            if time.monotonic() > deadline + 10:
                raise RuntimeError(f"PostgreSQL pid {pid} is still there (not reaped)")
            if time.monotonic() > deadline:
                for member in left:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(member, signal.SIGKILL)
            time.sleep(0.05)

    def remove(self) -> None:
        """Stop (or kill) the server and delete its directory."""
        try:
            self.stop()
        except Exception:  # a server that cannot stop cleanly is killed
            self.kill()
        self.kill()
        shutil.rmtree(self.settings.stack_dir, ignore_errors=True)


@contextlib.contextmanager
def tmpfs(path: Path, size: str, owner: str = "postgres") -> Iterator[Path]:
    """A small tmpfs mounted at ``path`` (owned by ``owner``), always unmounted after.

    Raises ``PermissionError`` when mounting is not allowed here (not root, or a
    container without the capability); callers skip on it.
    """
    if os.geteuid() != 0:
        raise PermissionError("mounting a tmpfs needs root")
    entry = pwd.getpwnam(owner)
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        [
            "mount", "-t", "tmpfs",
            "-o", f"size={size},mode=0700,uid={entry.pw_uid},gid={entry.pw_gid}",
            "tmpfs", str(path),
        ],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if mounted.returncode != 0:
        raise PermissionError(f"mount -t tmpfs failed: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        for _ in range(20):  # busy while a process still has a file open there
            if subprocess.run(["umount", str(path)], check=False).returncode == 0:
                break
            time.sleep(0.5)
        else:
            subprocess.run(["umount", "-l", str(path)], check=False)
