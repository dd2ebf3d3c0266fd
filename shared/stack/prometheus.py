"""Prometheus from the Debian package, scraping the services' /metrics ports."""

from __future__ import annotations

import shutil
import urllib.error
import urllib.request

import yaml

from ..settings import SERVICES
from .component import LOCAL_DEPLOY, Component
from .debian import install
from .errors import StackError
from .proc import require_free_port, start_detached, wait_until


class Prometheus(Component):
    name = "prometheus"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.settings.prometheus_port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def _binary(self) -> str:
        found = shutil.which("prometheus")
        if found is None:
            install("prometheus", self.settings.stack_dir / "apt.log", "Prometheus")
            found = shutil.which("prometheus")
        if found is None:
            raise StackError(
                "The `prometheus` package was installed but its binary is not on PATH; "
                "add its directory (usually /usr/bin) to PATH and run `trayecto stack up` again."
            )
        return found

    def config(self) -> dict[str, object]:
        """Scrape config: every service's /metrics on this machine, plus alert rules."""
        s = self.settings
        rules = sorted(str(p) for p in (LOCAL_DEPLOY.parent / "prometheus" / "rules").glob("*.yml"))
        return {
            "global": {"scrape_interval": "5s", "evaluation_interval": "5s"},
            "rule_files": rules,
            "scrape_configs": [
                {
                    "job_name": f"trayecto-{service}",
                    "metrics_path": "/metrics",
                    "static_configs": [
                        {
                            "targets": [f"127.0.0.1:{s.service_port(service)}"],
                            "labels": {"service": service},
                        }
                    ],
                }
                for service in SERVICES
            ]
            + [
                {
                    "job_name": "prometheus",
                    "static_configs": [{"targets": [self.address]}],
                }
            ],
        }

    def prepare(self) -> None:
        self._binary()
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "prometheus.yml").write_text(yaml.safe_dump(self.config(), sort_keys=False))

    def start(self) -> None:
        require_free_port(self.settings.prometheus_port, "Prometheus", "TRAYECTO_PROMETHEUS_PORT")
        start_detached(
            [
                self._binary(),
                f"--config.file={self.dir / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.dir / 'data'}",
                f"--web.listen-address={self.address}",
                "--web.enable-lifecycle",
                "--storage.tsdb.retention.time=7d",
            ],
            self.log,
            self.pid_file,
            self.dir,
        )
        wait_until(self.healthy, 60, "Prometheus", self.log)

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def reload(self) -> None:
        """Re-read the config after ``prepare`` rewrote it."""
        request = urllib.request.Request(f"{self.url}/-/reload", method="POST")
        with urllib.request.urlopen(request, timeout=5):
            pass
