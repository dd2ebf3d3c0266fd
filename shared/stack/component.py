"""What every part of the local stack provides to ``trayecto stack``."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from ..settings import Settings
from .proc import alive, read_pid

REPO_ROOT = Path(__file__).resolve().parents[2]
LOCAL_DEPLOY = REPO_ROOT / "deploy" / "local"


@dataclass(frozen=True, slots=True)
class Health:
    name: str
    running: bool
    healthy: bool
    pid: int | None
    address: str
    log: Path
    detail: str = ""


class Component(ABC):
    """A server process of the local stack, with its own directory under the stack dir."""

    name: str

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.dir = settings.stack_dir / self.name
        self.log = self.dir / f"{self.name}.log"
        self.pid_file = self.dir / f"{self.name}.pid"

    @property
    @abstractmethod
    def address(self) -> str: ...

    @abstractmethod
    def prepare(self) -> None:
        """Install or download what is missing, and initialise the data directory."""

    @abstractmethod
    def start(self) -> None:
        """Start the server (it is known not to be running) and wait until healthy."""

    @abstractmethod
    def healthy(self) -> bool: ...

    def pid(self) -> int | None:
        pid = read_pid(self.pid_file)
        return pid if alive(pid) else None

    def stop(self) -> None:
        from .proc import stop_pid

        pid = self.pid()
        if pid is not None:
            stop_pid(pid)
        self.pid_file.unlink(missing_ok=True)

    def health(self) -> Health:
        pid = self.pid()
        ok = pid is not None and self.healthy()
        return Health(self.name, pid is not None, ok, pid, self.address, self.log)
