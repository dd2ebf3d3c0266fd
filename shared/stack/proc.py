"""Process helpers for the local stack: detached starts, pid files, ports."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from .errors import StackError


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """True when something accepts TCP connections on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def read_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def alive(pid: int | None) -> bool:
    if pid is None or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by us) is not alive.
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def start_detached(cmd: Sequence[str], log_file: Path, pid_file: Path, cwd: Path) -> int:
    """Start a long-running server in its own session, logging to a file."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        process = subprocess.Popen(
            list(cmd),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    pid_file.write_text(f"{process.pid}\n")
    # Kept so that stop_pid can reap it when this process started it (no zombie, and
    # no "subprocess still running" warning when the Popen object is collected).
    _CHILDREN[process.pid] = process
    return process.pid


def _reaped(pid: int) -> bool:
    """True once the process is gone (and collected, when this process started it)."""
    child = _CHILDREN.get(pid)
    if child is not None:
        if child.poll() is None:
            return False
        del _CHILDREN[pid]
        return True
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    return not alive(pid)


def stop_pid(pid: int, timeout_s: float = 30.0) -> None:
    """SIGTERM the process group, then SIGKILL whatever is left after the timeout."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)
        deadline = time.monotonic() + (timeout_s if sig == signal.SIGTERM else 5.0)
        while time.monotonic() < deadline:
            if _reaped(pid):
                return
            time.sleep(0.1)


def wait_until(check: Callable[[], bool], timeout_s: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise StackError(
                f"{what} did not become healthy within {timeout_s:.0f}s. Its log is {log}; "
                "read its last lines for the cause, then run `trayecto stack down` and "
                "`trayecto stack up` again."
            )
        time.sleep(0.3)


def require_free_port(port: int, what: str, setting: str) -> None:
    if port_open(port):
        raise StackError(
            f"Port {port}, which {what} needs, is already taken by another process "
            f"(see `ss -ltnp 'sport = :{port}'`). Stop that process, or give {what} "
            f"another port with {setting}."
        )


def which(name: str, hint: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise StackError(hint)
    return path


def run(cmd: Sequence[str], what: str, log: Path | None = None, timeout_s: float = 600) -> str:
    """Run a short command; on failure raise a StackError quoting its output."""
    try:
        done = subprocess.run(
            list(cmd), capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise StackError(f"{what} took longer than {timeout_s:.0f}s and was stopped.") from exc
    output = (done.stdout or "") + (done.stderr or "")
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("a") as fh:
            fh.write(f"$ {' '.join(cmd)}\n{output}\n")
    if done.returncode != 0:
        tail = "\n".join(output.strip().splitlines()[-15:])
        raise StackError(f"{what} failed (exit {done.returncode}):\n{tail}")
    return output
