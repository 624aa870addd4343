"""Assets compiled per second (goal ≥ 500/s)."""

from __future__ import annotations

import time

from templates import CompileOptions, StorageTarget, compile_asset, load_file
from tests.support.examples import EXAMPLES

GOAL = 500.0


def run(seconds: float = 3.0) -> dict[str, float]:
    assets = [load_file(EXAMPLES / "dummy.yaml"), load_file(EXAMPLES / "input-dummy.yaml")]
    target = StorageTarget(endpoint="minio:9000", bucket="workflows", prefix="tenants/t", credentials_secret="wml-s3")
    options = CompileOptions(namespace="wml-t", tenant="t")
    count = 0
    started = time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        for asset in assets:
            compile_asset(asset, target, options).to_dict()
            count += 1
    rate = count / elapsed
    print(f"compile: {rate:8.0f} assets/s   goal ≥ {GOAL:.0f}/s   ratio {rate / GOAL:5.2f}x")
    return {"compile_per_second": rate}
