"""A small PKI for the stack (openssl CLI, ECDSA P-256) and the kubeconfigs that use it.

Created once per state directory and reused. The CA signs the API server's serving
certificate, the kubelet's serving certificate and one client certificate per component.
"""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from . import config
from .config import Layout


@dataclass(frozen=True)
class Cert:
    name: str
    cn: str
    org: str | None = None
    server_sans: tuple[str, ...] = ()  # e.g. "IP:10.88.0.1", "DNS:kubernetes"; empty -> client cert


def _certs() -> list[Cert]:
    apiserver_sans = (
        f"IP:{config.BRIDGE_IP}",
        f"IP:{config.KUBERNETES_SERVICE_IP}",
        "IP:127.0.0.1",
        "DNS:localhost",
        "DNS:kubernetes",
        "DNS:kubernetes.default",
        "DNS:kubernetes.default.svc",
        "DNS:kubernetes.default.svc.cluster.local",
    )
    return [
        Cert("apiserver", "kube-apiserver", server_sans=apiserver_sans),
        Cert(
            "kubelet-serving",
            config.NODE_NAME,
            server_sans=(f"IP:{config.BRIDGE_IP}", f"DNS:{config.NODE_NAME}"),
        ),
        Cert("admin", "wml-admin", org="system:masters"),
        Cert("apiserver-kubelet-client", "kube-apiserver-kubelet-client", org="system:masters"),
        Cert("controller-manager", "system:kube-controller-manager"),
        Cert("scheduler", "system:kube-scheduler"),
        Cert("kubelet", f"system:node:{config.NODE_NAME}", org="system:nodes"),
        Cert("kube-proxy", "system:kube-proxy"),
    ]


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def _ec_key(path: Path) -> None:
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(path))
    path.chmod(0o600)


def ensure_pki(layout: Layout) -> None:
    pki = layout.pki
    pki.mkdir(parents=True, exist_ok=True)
    pki.chmod(0o700)
    ca_key, ca_crt = pki / "ca.key", pki / "ca.crt"
    if not ca_crt.exists():
        _ec_key(ca_key)
        _openssl(
            "req",
            "-x509",
            "-new",
            "-key",
            str(ca_key),
            "-out",
            str(ca_crt),
            "-days",
            "3650",
            "-subj",
            "/CN=wml-stack-ca",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
        )
    if not (pki / "sa.pub").exists():
        _ec_key(pki / "sa.key")
        _openssl("pkey", "-in", str(pki / "sa.key"), "-pubout", "-out", str(pki / "sa.pub"))
    for cert in _certs():
        crt, key = pki / f"{cert.name}.crt", pki / f"{cert.name}.key"
        if crt.exists():
            continue
        _ec_key(key)
        subj = (f"/O={cert.org}" if cert.org else "") + f"/CN={cert.cn}"
        with tempfile.TemporaryDirectory() as tmp:
            csr, ext = Path(tmp) / "req.csr", Path(tmp) / "ext.cnf"
            _openssl("req", "-new", "-key", str(key), "-out", str(csr), "-subj", subj)
            lines = [
                "basicConstraints=critical,CA:FALSE",
                "keyUsage=critical,digitalSignature,keyEncipherment",
            ]
            if cert.server_sans:
                lines += ["extendedKeyUsage=serverAuth", "subjectAltName=" + ",".join(cert.server_sans)]
            else:
                lines += ["extendedKeyUsage=clientAuth"]
            ext.write_text("\n".join(lines) + "\n")
            _openssl(
                "x509",
                "-req",
                "-in",
                str(csr),
                "-CA",
                str(ca_crt),
                "-CAkey",
                str(ca_key),
                "-CAcreateserial",
                "-out",
                str(crt),
                "-days",
                "3650",
                "-extfile",
                str(ext),
            )


def kubeconfig(layout: Layout, cert_name: str, *, namespace: str = "default") -> dict[str, object]:
    pki = layout.pki
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "wml",
                "cluster": {"server": layout.api_server, "certificate-authority": str(pki / "ca.crt")},
            }
        ],
        "users": [
            {
                "name": cert_name,
                "user": {
                    "client-certificate": str(pki / f"{cert_name}.crt"),
                    "client-key": str(pki / f"{cert_name}.key"),
                },
            }
        ],
        "contexts": [{"name": "wml", "context": {"cluster": "wml", "user": cert_name, "namespace": namespace}}],
        "current-context": "wml",
    }


def ensure_kubeconfigs(layout: Layout) -> None:
    layout.config.mkdir(parents=True, exist_ok=True)
    files = {layout.kubeconfig: kubeconfig(layout, "admin")}
    for name in ("controller-manager", "scheduler", "kubelet", "kube-proxy"):
        files[layout.component_kubeconfig(name)] = kubeconfig(layout, name)
    files[layout.component_kubeconfig("argo")] = kubeconfig(layout, "admin", namespace=config.ARGO_NAMESPACE)
    for path, content in files.items():
        text = yaml.safe_dump(content, sort_keys=False)
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            path.chmod(0o600)
