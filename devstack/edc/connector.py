"""Real EDC connectors for tests and the demo, from Maven Central, built once into the cache, run on loopback.

Two releases, each a pom that the shade plugin merges into one runnable jar (nothing is compiled, nothing built
lands in the repository; jars live in ``$WML_EDC_CACHE`` or ``~/.cache/workflow-middlelayer/edc-<version>/``,
rebuilt only when the pom changes):

- **0.10.0** (``devstack/edc/pom.xml``): the newest release whose control-plane HTTP provisioner
  (``provision-http``) is published; a control plane with an embedded HTTP data plane.
- **0.15.1** (``devstack/edc/v0_15/pom.xml``): the newest release served here; ``controlplane-base-bom`` +
  ``iam-mock``, no data plane of its own, so the control plane signals transfers to ours (data plane signaling).

``python -m devstack.edc.connector [version]`` builds one (about a minute with a cold Maven cache) and prints its jar.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any

import httpx

from devstack.servers import free_port
from provisioner.protocols.http_provisioner.wire import EDC_NAMESPACE

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Release:
    version: str
    pom: Path
    properties: Path
    ports: tuple[str, ...]

    @property
    def cache(self) -> Path:
        root = Path(os.environ.get("WML_EDC_CACHE", Path.home() / ".cache" / "workflow-middlelayer"))
        return root / f"edc-{self.version}"

    @property
    def jar(self) -> Path:
        return self.cache / "target" / "edc-connector.jar"


V0_10 = Release(
    "0.10.0",
    HERE / "pom.xml",
    HERE / "connector.properties",
    ("default", "management", "protocol", "control", "public"),
)
V0_15 = Release(
    "0.15.1",
    HERE / "v0_15" / "pom.xml",
    HERE / "v0_15" / "connector.properties",
    ("default", "management", "protocol", "control"),
)
RELEASES = {r.version: r for r in (V0_10, V0_15)}
EDC_VERSION = V0_10.version  # the HTTP provisioner's release (tests/edc/test_real_connector.py)

EDC = EDC_NAMESPACE
CONTEXT = {"@vocab": EDC}
ODRL = "http://www.w3.org/ns/odrl.jsonld"
PROTOCOL = "dataspace-protocol-http"


def _say(text: str) -> None:
    print(f"[edc] {text}", file=sys.stderr, flush=True)


def _stamp(release: Release) -> str:
    return hashlib.sha256(release.pom.read_bytes()).hexdigest()[:16]


def ensure_runtime(echo: Callable[[str], None] = _say, release: Release = V0_10) -> Path:
    """The connector's runnable jar, built with Maven on first use and reused while the pom is unchanged."""
    cache, jar, version = release.cache, release.jar, release.version
    cache.mkdir(parents=True, exist_ok=True)
    stamp = cache / "built.stamp"
    with open(cache / "build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel test sessions build once
        if jar.exists() and stamp.exists() and stamp.read_text() == _stamp(release):
            return jar
        mvn = shutil.which("mvn")
        if mvn is None:
            raise RuntimeError("Maven (mvn) is needed to build the EDC connector")
        started = time.monotonic()
        log = cache / "build.log"
        echo(f"building EDC {version} connector with Maven into {cache} (log: {log}); cold: ~1-3 min")
        cmd = [mvn, "-B", "-f", str(release.pom), "package", f"-Dedc.build.dir={cache / 'target'}"]
        with open(log, "w") as out:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            assert proc.stdout is not None
            downloads = 0
            for line in proc.stdout:
                out.write(line)
                if "Downloaded from" in line:
                    downloads += 1
                    if downloads % 100 == 0:
                        echo(f"  … {downloads} artifacts downloaded")
            code = proc.wait()
        if code != 0 or not jar.exists():
            tail = "".join(log.read_text().splitlines(keepends=True)[-30:])
            raise RuntimeError(f"Maven build of the EDC connector failed (exit {code}):\n{tail}")
        stamp.write_text(_stamp(release))
        echo(f"built {jar} in {time.monotonic() - started:.0f}s")
        return jar


def _java() -> str:
    java = os.environ.get("WML_EDC_JAVA") or shutil.which("java")
    if not java:
        raise RuntimeError("a Java 17+ runtime is needed for the EDC connector")
    return java


def _token_keys(workdir: Path) -> tuple[str, Path]:
    """An EC key pair for the data plane's access tokens: the private PEM (for the config) and the public file."""
    private, public = workdir / "token-signer.pem", workdir / "token-verifier.pem"
    if not private.exists():
        subprocess.run(
            ["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(private)],
            check=True,
            capture_output=True,
        )
        subprocess.run(["openssl", "pkey", "-in", str(private), "-pubout", "-out", str(public)], check=True)
    return private.read_text(), public


class Connector:
    """One EDC runtime (control plane + embedded data plane) as a Java process (EDC listens on all addresses).
    It runs on the node, outside the cluster: it reaches tenant APIs through the ingress, as a remote one would."""

    def __init__(
        self,
        participant: str,
        api_key: str,
        workdir: Path,
        provisioner_endpoint: str | None = None,
        host: str = "127.0.0.1",
        release: Release = V0_10,
        control_key: str = "",
    ) -> None:
        self.release = release
        self.control_key = control_key or f"{api_key}-control"
        self.participant = participant
        self.host = host  # the address its URLs name: a provisioner in a pod calls back on the node bridge
        self.api_key = api_key
        self.workdir = workdir / participant
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.provisioner_endpoint = provisioner_endpoint
        self.ports = {name: free_port() for name in release.ports}
        self.process: subprocess.Popen[bytes] | None = None
        self.log = self.workdir / "connector.log"
        self.http = httpx.Client(timeout=30, headers={"x-api-key": api_key})

    @property
    def management(self) -> str:
        return f"http://{self.host}:{self.ports['management']}/management"

    @property
    def protocol(self) -> str:
        return f"http://{self.host}:{self.ports['protocol']}/protocol"

    @property
    def control(self) -> str:
        return f"http://{self.host}:{self.ports['control']}/control"

    def _config(self) -> Path:
        text = self.release.properties.read_text()
        if self.provisioner_endpoint:
            text += (HERE / "provisioner.properties").read_text()
        values: dict[str, Any] = {f"port_{name}": port for name, port in self.ports.items()}
        values.update(
            participant=self.participant,
            host=self.host,
            api_key=self.api_key,
            control_key=self.control_key,
            provisioner_endpoint=self.provisioner_endpoint or "",
        )
        if "public" in self.ports:  # the embedded data plane signs its tokens
            private_key, public_key = _token_keys(self.workdir)
            values.update(
                public_key_path=public_key,
                private_key=private_key.strip().replace("\n", "\\n"),  # one properties line; Java reads \n back
            )
        path = self.workdir / "connector.properties"
        path.write_text(Template(text).substitute(values))
        return path

    def start(self, jar: Path, timeout: float = 120) -> Connector:
        """Start the runtime and wait until its health check says so; one restart on the same ports if not.

        Its ports were chosen free when this object was made; the restart covers a runtime that came up but
        whose health check stayed unreachable (seen once in CI, cause unknown), and the error names what the
        last probe saw so that a second occurrence can be diagnosed.
        """
        last = ""
        for _attempt in range(2):
            last = self._launch(jar, timeout)
            if not last:
                return self
            self.stop(close=False)
        self.stop()
        raise RuntimeError(f"EDC {self.participant} did not become healthy (last probe: {last}):\n{self.tail()}")

    def _launch(self, jar: Path, timeout: float) -> str:
        """Run the JVM; '' once healthy, else what the last health probe saw."""
        cmd = [_java(), "-Xmx384m", f"-Dedc.fs.config={self._config()}"]
        cmd += ["-jar", str(jar)]
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=self.workdir)
        deadline = time.monotonic() + timeout
        health = f"http://127.0.0.1:{self.ports['default']}/api/check/health"
        last = "no answer yet"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"EDC {self.participant} exited ({self.process.returncode}):\n{self.tail()}")
            if "Failed to bind to" in self.tail(200):  # the JVM lives on after Jetty failed: no use waiting
                self.stop(close=False)
                raise RuntimeError(f"EDC {self.participant} could not bind its ports:\n{self.tail()}")
            try:
                response = httpx.get(health, timeout=5, trust_env=False)
                if response.json().get("isSystemHealthy"):
                    return ""
                last = f"{response.status_code} {response.text[:300]}"
            except (httpx.HTTPError, ValueError) as exc:
                last = f"{type(exc).__name__}: {exc}"
            time.sleep(0.5)
        return last

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, close: bool = True) -> None:
        if close:
            self.http.close()
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def __enter__(self) -> Connector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- management API -------------------------------------------------------------------------------------
    def call(self, method: str, path: str, body: Any = None, expect: int | tuple[int, ...] = (200, 204)) -> Any:
        response = self.http.request(method, f"{self.management}{path}", json=body)
        codes = (expect,) if isinstance(expect, int) else expect
        if response.status_code not in codes:
            raise AssertionError(f"{method} {path}: {response.status_code} {response.text[:500]}")
        return response.json() if response.content else None

    def offer_asset(self, asset_id: str, provisioner_url: str) -> None:
        """An asset provisioned by the HTTP provisioner, an open policy and a contract definition for it."""
        address = {"@type": "DataAddress", "type": "HttpProvision", "baseUrl": provisioner_url}
        asset = {"@context": CONTEXT, "@id": asset_id, "properties": {"name": asset_id}, "dataAddress": address}
        self.call("POST", "/v3/assets", asset)
        self.open_contract(asset_id)

    def open_contract(self, asset_id: str) -> None:
        """An open policy and a contract definition offering ``asset_id`` to anyone."""
        policy = {"@context": ODRL, "@type": "Set", "permission": [], "prohibition": [], "obligation": []}
        self.call("POST", "/v3/policydefinitions", {"@context": CONTEXT, "@id": f"open-{asset_id}", "policy": policy})
        definition = {
            "@context": CONTEXT,
            "@id": f"cd-{asset_id}",
            "accessPolicyId": f"open-{asset_id}",
            "contractPolicyId": f"open-{asset_id}",
            "assetsSelector": [
                {"@type": "Criterion", "operandLeft": f"{EDC}id", "operator": "=", "operandRight": asset_id}
            ],
        }
        self.call("POST", "/v3/contractdefinitions", definition)

    def offer_id(self, provider: Connector, asset_id: str) -> str:
        request = {
            "@context": CONTEXT,
            "@type": "CatalogRequest",
            "counterPartyAddress": provider.protocol,
            "counterPartyId": provider.participant,
            "protocol": PROTOCOL,
        }
        catalog = self.call("POST", "/v3/catalog/request", request)
        datasets = catalog.get("dcat:dataset") or catalog.get("dataset") or []
        for dataset in datasets if isinstance(datasets, list) else [datasets]:
            if asset_id in (dataset.get("@id"), dataset.get("id")):
                policies = dataset.get("odrl:hasPolicy") or dataset.get("hasPolicy")
                policy = policies[0] if isinstance(policies, list) else policies
                return str(policy["@id"])
        raise AssertionError(f"asset {asset_id} not in {provider.participant}'s catalogue: {catalog}")

    def negotiate(self, provider: Connector, asset_id: str, timeout: float = 60) -> str:
        """A contract for ``asset_id`` over DSP; returns the agreement id."""
        request = {
            "@context": CONTEXT,
            "@type": "ContractRequest",
            "counterPartyAddress": provider.protocol,
            "protocol": PROTOCOL,
            "policy": {
                "@context": ODRL,
                "@id": self.offer_id(provider, asset_id),
                "@type": "Offer",
                "assigner": provider.participant,
                "target": asset_id,
            },
        }
        negotiation = self.call("POST", "/v3/contractnegotiations", request)["@id"]
        state = self.wait_state(f"/v3/contractnegotiations/{negotiation}", {"FINALIZED"}, timeout, {"TERMINATED"})
        return str(state["contractAgreementId"])

    def transfer(self, provider: Connector, agreement: str, callbacks: list[str] | None = None) -> str:
        """An HttpData-PULL transfer; ``callbacks`` get the transfer's events (the EDR is in the started one)."""
        request: dict[str, Any] = {
            "@context": CONTEXT,
            "@type": "TransferRequest",
            "counterPartyAddress": provider.protocol,
            "contractId": agreement,
            "protocol": PROTOCOL,
            "transferType": "HttpData-PULL",
        }
        if callbacks:
            request["callbackAddresses"] = [
                {"uri": uri, "events": ["transfer.process"], "transactional": False} for uri in callbacks
            ]
        return str(self.call("POST", "/v3/transferprocesses", request)["@id"])

    def transfers(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.call(
            "POST", "/v3/transferprocesses/request", {"@context": CONTEXT, "@type": "QuerySpec"}
        )
        return found

    def provider_transfer(self, consumer_transfer_id: str) -> dict[str, Any] | None:
        """The provider's transfer process for a consumer's (DSP correlates them by the consumer's id)."""
        for process in self.transfers():
            if process.get("correlationId") == consumer_transfer_id:
                return process
        return None

    def edr(self, transfer_id: str) -> dict[str, Any] | None:
        """The consumer's endpoint data reference (the data plane's URL and a token for it); None until the
        provider's TransferStart has arrived."""
        return self.call("GET", f"/v3/edrs/{transfer_id}/dataaddress", expect=(200, 404)) or None

    def terminate(self, transfer_id: str, reason: str) -> None:
        body = {"@context": CONTEXT, "@type": "TerminateTransfer", "reason": reason}
        self.call("POST", f"/v3/transferprocesses/{transfer_id}/terminate", body)

    def wait_state(
        self, path: str, states: set[str], timeout: float = 60, fail: set[str] | None = None
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        current: dict[str, Any] = {}
        while time.monotonic() < deadline:
            current = self.call("GET", path)
            if current.get("state") in states:
                return current
            if fail and current.get("state") in fail:
                raise AssertionError(f"{path} reached {current.get('state')}: {current}\n{self.tail()}")
            time.sleep(0.3)
        raise AssertionError(f"{path} did not reach {states} in {timeout}s: {current}\n{self.tail()}")


if __name__ == "__main__":
    print(ensure_runtime(release=RELEASES[sys.argv[1] if len(sys.argv) > 1 else V0_10.version]))
