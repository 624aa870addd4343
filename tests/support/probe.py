"""The probe asset: its worker runs the consumer's own script, the strongest position a consumer can have. Every
input kind and both output kinds, for the adversarial and receipt tests."""

from __future__ import annotations

import yaml

from templates import parse_document

# An asset whose worker runs the consumer's own script: the strongest position a consumer can have.
PROBE = parse_document(
    yaml.safe_load(
        """
name: probe
version: "1"
worker:
  image: imlahso/dummy-job
  command: ["/bin/sh", "/app/entrypoint.sh"]
  workingDir: /app
  outputDir: /output
resources: {cpu: 100m, memory: 64Mi, ephemeralStorage: 64Mi}
limits: {timeout: 5m, outputSize: 8Mi, inputSize: 256Mi}
inputs:
  - {name: env, kind: env}
  - {name: entrypoint.sh, kind: file, path: /app/entrypoint.sh, maxSize: 64Ki}
  - {name: data, kind: directory, path: /data, required: false}
  - {name: bundle.tgz, kind: archive, format: tar.gz, path: /bundle, required: false}
  - {name: bundle.zip, kind: archive, format: zip, path: /zipped, required: false, maxSize: 8Mi}
outputs:
  - {name: result, kind: file, path: /output/result, required: false}
  - {name: tree, kind: directory, path: /output/tree, required: false}
"""
    )
)

# The probe with a writable image (as a legacy asset has): what it writes outside its volumes lands in the
# container's writable layer on the node's disk, bounded by its ephemeral-storage limit.
PROBE_RW = PROBE.model_copy(
    update={
        "name": "probe-rw",
        "security": PROBE.security.model_copy(update={"read_only_root_filesystem": False, "run_as_non_root": False}),
    }
)
