"""Apache Kafka, single-node KRaft (broker + controller), from Maven Central jars."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from ..kafka.admin import kafka_ready, kafka_stores
from .component import LOCAL_DEPLOY, Component
from .errors import StackError
from .proc import require_free_port, run, start_detached, wait_until, which

_NO_JAVA = (
    "Java was not found. The local Kafka broker needs a Java 17+ runtime: on Debian run "
    "`apt-get install openjdk-17-jre-headless` (as root), or put a JDK's bin/ on PATH."
)
_NO_MAVEN = (
    "Maven (`mvn`) was not found. The local stack uses it once to fetch the Apache Kafka "
    "jars from Maven Central: on Debian run `apt-get install maven` (as root)."
)


class Kafka(Component):
    name = "kafka"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.settings.kafka_port}"

    @property
    def libs(self) -> Path:
        return self.settings.cache_dir / f"kafka-{self.settings.kafka_version}" / "libs"

    def prepare(self) -> None:
        java = which("java", _NO_JAVA)
        version = run([java, "-version"], "java -version")
        if '"1.' in version or any(f'"{old}' in version for old in range(9, 17)):
            raise StackError(
                f"Kafka {self.settings.kafka_version} needs Java 17+; found:\n"
                f"{version.strip()}\nInstall openjdk-17-jre-headless."
            )
        self._fetch_jars()
        self._write_config()
        if not (self.dir / "data" / "meta.properties").exists():
            self._format()

    def _fetch_jars(self) -> None:
        marker = self.libs / ".complete"
        if marker.exists():
            return
        mvn = which("mvn", _NO_MAVEN)
        staging = self.libs.with_name("libs.partial")
        shutil.rmtree(staging, ignore_errors=True)
        try:
            run(
                [
                    mvn,
                    "-B",
                    "-q",
                    "-f",
                    str(LOCAL_DEPLOY / "kafka" / "pom.xml"),
                    f"-Dkafka.version={self.settings.kafka_version}",
                    "dependency:copy-dependencies",
                    "-DincludeScope=runtime",
                    f"-DoutputDirectory={staging}",
                ],
                f"Downloading Apache Kafka {self.settings.kafka_version} from Maven Central",
                log=self.dir / "maven.log",
            )
        except StackError as exc:
            raise StackError(
                f"{exc}\n\nCould not fetch the Kafka jars from Maven Central. Check that this "
                "machine reaches Maven Central (or the mirror in ~/.m2/settings.xml) and that "
                f"TRAYECTO_KAFKA_VERSION={self.settings.kafka_version} exists as "
                "org.apache.kafka:kafka_2.13, then run `trayecto stack up` again."
            ) from exc
        shutil.rmtree(self.libs, ignore_errors=True)
        staging.rename(self.libs)
        marker.write_text("ok\n")

    def _write_config(self) -> None:
        s = self.settings
        self.dir.mkdir(parents=True, exist_ok=True)
        lines = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.bootstrap.servers": f"127.0.0.1:{s.kafka_controller_port}",
            "listeners": (
                f"PLAINTEXT://127.0.0.1:{s.kafka_port},"
                f"CONTROLLER://127.0.0.1:{s.kafka_controller_port}"
            ),
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{s.kafka_port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.dir / "data"),
            "num.partitions": str(s.topic_partitions),
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            # The 128 MiB default has caused out-of-memory at start-up on small heaps.
            "log.cleaner.dedupe.buffer.size": str(32 * 1024 * 1024),
            "auto.create.topics.enable": "false",
        }
        text = "".join(f"{key}={value}\n" for key, value in lines.items())
        (self.dir / "server.properties").write_text(text)

    def _java(self, main: str, *args: str, heap: bool = False) -> list[str]:
        cmd = [which("java", _NO_JAVA)]
        if heap:
            cmd += ["-Xms256m", "-Xmx512m", "-XX:+UseG1GC"]
        return [
            *cmd,
            f"-Dlog4j2.configurationFile={LOCAL_DEPLOY / 'kafka' / 'log4j2.properties'}",
            "-cp",
            f"{self.libs}/*",
            main,
            *args,
        ]

    def _format(self) -> None:
        shutil.rmtree(self.dir / "data", ignore_errors=True)
        cluster_id = (
            run(self._java("kafka.tools.StorageTool", "random-uuid"), "kafka-storage random-uuid")
            .strip()
            .splitlines()[-1]
        )
        run(
            self._java(
                "kafka.tools.StorageTool",
                "format",
                "-t",
                cluster_id,
                "-c",
                str(self.dir / "server.properties"),
                "--standalone",
            ),
            "Formatting the Kafka data directory",
            log=self.log,
        )

    def start(self) -> None:
        s = self.settings
        require_free_port(s.kafka_port, "Kafka", "TRAYECTO_KAFKA_BOOTSTRAP")
        require_free_port(
            s.kafka_controller_port, "the Kafka controller", "TRAYECTO_KAFKA_CONTROLLER_PORT"
        )
        start_detached(
            self._java("kafka.Kafka", str(self.dir / "server.properties"), heap=True),
            self.log,
            self.pid_file,
            self.dir,
        )
        wait_until(self._alive_and_ready, 90, "Kafka", self.log)
        # Answering metadata comes first; storing a record, once the broker's
        # partitions are loaded (a while when many topics exist).
        wait_until(self._alive_and_storing, 180, "Kafka (storing a record)", self.log)

    def _alive_and_ready(self) -> bool:
        self._still_running()
        return self.healthy()

    def _alive_and_storing(self) -> bool:
        self._still_running()
        return asyncio.run(kafka_stores(self.address))

    def _still_running(self) -> None:
        if self.pid() is None:
            raise StackError(f"Kafka exited during start-up; see the end of {self.log}.")

    def healthy(self) -> bool:
        return asyncio.run(kafka_ready(self.address))
