"""Installing missing Debian packages, when running as root on Debian."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from .errors import StackError
from .proc import run

_updated = False


def install(package: str, log: Path, why: str) -> None:
    """``apt-get install`` a package as root, or explain what to install."""
    global _updated
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise StackError(
            f"{why} is not installed. Install the Debian/Ubuntu package `{package}` "
            f"(`sudo apt-get install {package}`) or your distribution's equivalent, "
            "then run `trayecto stack up` again."
        )
    env_cmd = ["env", "DEBIAN_FRONTEND=noninteractive"]
    if not _updated:
        run([*env_cmd, "apt-get", "update", "-qq"], "apt-get update", log=log)
        _updated = True
    run(
        [*env_cmd, "apt-get", "install", "-y", "-qq", "--no-install-recommends", package],
        f"apt-get install {package}",
        log=log,
    )
