"""PostgreSQL from the system binaries, in the stack's own data directory and port."""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg

from .component import Component
from .debian import install
from .errors import StackError
from .proc import require_free_port, run, wait_until


def _bin_dir() -> Path | None:
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if versions:
        return versions[-1].parent
    found = shutil.which("pg_ctl")
    return Path(found).resolve().parent if found else None


class Postgres(Component):
    name = "postgres"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.settings.postgres_port}"

    @property
    def data(self) -> Path:
        return self.dir / "data"

    @property
    def user(self) -> str:
        return urlsplit(self.settings.database_url).username or "trayecto"

    @property
    def database(self) -> str:
        return urlsplit(self.settings.database_url).path.lstrip("/") or "trayecto"

    def _bin(self, tool: str) -> str:
        bin_dir = _bin_dir()
        if bin_dir is None:
            install("postgresql", self.settings.stack_dir / "apt.log", "The PostgreSQL server")
            bin_dir = _bin_dir()
        if bin_dir is None:
            raise StackError("PostgreSQL was installed but its binaries were not found.")
        return str(bin_dir / tool)

    def _as_owner(self, cmd: list[str]) -> list[str]:
        # The server refuses to run as root: as root, run it as the `postgres` user.
        if os.geteuid() != 0:
            return cmd
        try:
            pwd.getpwnam("postgres")
        except KeyError as exc:
            raise StackError(
                "Running as root, PostgreSQL needs the system user `postgres` to own its "
                "data directory; none exists. Install the `postgresql` package (it creates "
                "the user) or run the stack as an ordinary user."
            ) from exc
        return ["runuser", "-u", "postgres", "--", *cmd]

    def _chown(self, path: Path) -> None:
        if os.geteuid() == 0:
            entry = pwd.getpwnam("postgres")
            for parent in [path, *path.parents]:
                if parent == self.settings.stack_dir.parent:
                    break
                parent.chmod(parent.stat().st_mode | 0o011)  # traversable by postgres
            os.chown(path, entry.pw_uid, entry.pw_gid)
            probe = subprocess.run(
                ["runuser", "-u", "postgres", "--", "test", "-w", str(path)], check=False
            )
            if probe.returncode != 0:
                raise StackError(
                    f"The user `postgres` cannot write to {path}: a parent directory is "
                    "closed to other users. Set TRAYECTO_STACK_DIR to a directory outside "
                    "/root (the default as root is /var/lib/trayecto/stack)."
                )

    def prepare(self) -> None:
        initdb = self._bin("initdb")
        self.dir.mkdir(parents=True, exist_ok=True)
        self._chown(self.dir)
        if (self.data / "PG_VERSION").exists():
            return
        shutil.rmtree(self.data, ignore_errors=True)
        run(
            self._as_owner(
                [
                    initdb,
                    "-D",
                    str(self.data),
                    "-U",
                    self.user,
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--locale=C.UTF-8",
                    "--no-sync",
                ]
            ),
            "initdb (creating the PostgreSQL data directory)",
            log=self.dir / "setup.log",
        )

    def pid(self) -> int | None:
        from .proc import alive

        try:
            pid = int((self.data / "postmaster.pid").read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if alive(pid) else None

    def start(self) -> None:
        port = self.settings.postgres_port
        require_free_port(port, "PostgreSQL", "the port in TRAYECTO_DATABASE_URL")
        options = (
            f"-p {port} -c listen_addresses=127.0.0.1 -k {self.dir} "
            "-c fsync=off -c synchronous_commit=on -c max_connections=200"
        )
        run(
            self._as_owner(
                [
                    self._bin("pg_ctl"),
                    "start",
                    "-D",
                    str(self.data),
                    "-w",
                    "-t",
                    "60",
                    "-l",
                    str(self.log),
                    "-o",
                    options,
                ]
            ),
            "Starting PostgreSQL",
        )
        wait_until(self.healthy, 60, "PostgreSQL", self.log)
        asyncio.run(self._create_database())

    async def _create_database(self) -> None:
        conn = await asyncpg.connect(self._dsn("postgres"))
        try:
            exists = await conn.fetchval(
                "SELECT 1 FROM pg_database WHERE datname = $1", self.database
            )
            if not exists:
                await conn.execute(f'CREATE DATABASE "{self.database}"')
        finally:
            await conn.close()

    def _dsn(self, database: str) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.settings.postgres_port}/{database}"

    def stop(self) -> None:
        if self.pid() is not None:
            run(
                self._as_owner(
                    [
                        self._bin("pg_ctl"),
                        "stop",
                        "-D",
                        str(self.data),
                        "-m",
                        "fast",
                        "-w",
                    ]
                ),
                "Stopping PostgreSQL",
            )

    def healthy(self) -> bool:
        async def check() -> bool:
            try:
                conn = await asyncpg.connect(self._dsn("postgres"), timeout=3)
            except (OSError, asyncpg.PostgresError, TimeoutError):
                return False
            try:
                return bool(await conn.fetchval("SELECT 1") == 1)
            finally:
                await conn.close()

        return asyncio.run(check())
