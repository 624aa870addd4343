"""``make bench``: benchmarks that print ratios against their goals."""

from __future__ import annotations

import sys

from tests.bench import compile as compile_bench


def main(argv: list[str]) -> int:
    wanted = set(argv) or {"compile", "api", "starts", "api-pod", "provisioner", "signaling", "load"}
    if "compile" in wanted:
        compile_bench.run()
    if "api" in wanted:
        from tests.bench import api as api_bench

        api_bench.run()
    if "starts" in wanted:
        from tests.bench import starts as starts_bench

        starts_bench.run()
    if "api-pod" in wanted:
        from tests.bench import api_pod as api_pod_bench

        api_pod_bench.run()
    if "provisioner" in wanted:
        from tests.bench import provisioner as provisioner_bench

        provisioner_bench.run()
    if "signaling" in wanted:
        from tests.bench import signaling as signaling_bench

        signaling_bench.run()
    if "load" in wanted:
        from tests.bench import load as load_bench

        load_bench.run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
