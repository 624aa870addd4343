"""Command line: python -m devstack.stack up|down|status|env|build|import."""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

from . import config
from .config import Layout
from .images import import_archive
from .launcher import ensure_built, ensure_stack, info, is_healthy, stack_status, stack_users, stop_stack


def _print_info(layout: Layout, *, show_secrets: bool) -> None:
    i = info(layout)
    secret = i.s3_secret_key if show_secrets else "(hidden; use --show-secrets)"
    print(f"kubeconfig:       {i.kubeconfig}   (export KUBECONFIG={i.kubeconfig})")
    print(f"API server:       {i.api_server}")
    print(f"Argo Server (UI): {i.argo_server_url}   (client auth: send a ServiceAccount bearer token)")
    print(f"MinIO S3:         {i.s3_endpoint}   bucket {i.bucket}")
    print(f"MinIO console:    {i.minio_console_url}")
    print(f"MinIO access key: {i.s3_access_key}")
    print(f"MinIO secret key: {secret}")
    print(f"state dir:        {i.state_dir}   (logs in {layout.logs})")


def _print_status(layout: Layout) -> None:
    components = stack_status(layout)
    for name, st in components.items():
        state = "healthy" if st["healthy"] else ("UNHEALTHY" if st["pid"] else "stopped")
        pid = st["pid"] or "-"
        print(f"  {name:28} {state:10} pid {pid!s:8} rss {st['rss_mib']:7.1f} MiB")
    total = sum(float(str(st["rss_mib"])) for st in components.values())
    print(f"  {'total (idle: no tenants)':28} {'':10} {'':12} rss {total:7.1f} MiB")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.stack", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="start the stack (reuses a healthy one)")
    down = sub.add_parser("down", help="stop the stack and clean the host")
    down.add_argument("--purge", action="store_true", help="also delete all stack data (certs, etcd, MinIO)")
    down.add_argument("--force", action="store_true", help="stop even while test sessions use the stack")
    status = sub.add_parser("status", help="show URLs, credentials and component health")
    status.add_argument("--show-secrets", action="store_true")
    status.add_argument("--json", action="store_true")
    sub.add_parser("env", help="print shell exports (KUBECONFIG, ARGO_SERVER, S3_*)")
    sub.add_parser("build", help="build missing binaries only")
    imp = sub.add_parser("import", help="import an image archive (OCI layout / docker save tar) into containerd")
    imp.add_argument("archive", type=Path)
    args = parser.parse_args(argv)
    layout = Layout()

    if args.command == "up":
        ensure_stack(layout)
        _print_info(layout, show_secrets=False)
        _print_status(layout)
    elif args.command == "down":
        users = stack_users(layout)
        if users and not args.force:
            print(f"test sessions (pids {users}) are using the stack; use --force to stop it anyway")
            return 1
        stop_stack(layout, purge=args.purge)
    elif args.command == "status":
        if args.json:
            data = info(layout).model_dump(mode="json")
            if not args.show_secrets:
                data.pop("s3_secret_key")
            print(json.dumps({"info": data, "components": stack_status(layout)}, indent=2))
        else:
            _print_info(layout, show_secrets=args.show_secrets)
            _print_status(layout)
        return 0 if is_healthy(layout) else 1
    elif args.command == "env":
        i = info(layout)
        exports = {
            "KUBECONFIG": str(i.kubeconfig),
            "ARGO_SERVER_URL": i.argo_server_url,
            "S3_ENDPOINT": i.s3_endpoint,
            "S3_BUCKET": i.bucket,
            "AWS_ACCESS_KEY_ID": i.s3_access_key,
            "AWS_SECRET_ACCESS_KEY": i.s3_secret_key,
        }
        for key, value in exports.items():
            print(f"export {key}={shlex.quote(value)}")
    elif args.command == "import":
        import_archive(args.archive, layout)
    elif args.command == "build":
        ensure_built(layout)
        print(subprocess.run(["bash", str(config.BUILD_SCRIPT), "paths"], capture_output=True, text=True).stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
