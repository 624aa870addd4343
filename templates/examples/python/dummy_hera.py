"""The dummy asset written in Python: the worker is an ordinary Hera Container."""

from hera.workflows import Container, Resources

from templates.authoring import asset_from_container

worker = Container(
    name="worker",
    image="imlahso/dummy-job",
    command=["/bin/sh", "entrypoint.sh"],
    working_dir="/app",
    resources=Resources(cpu_request="250m", memory_request="64Mi"),
)

ASSET = asset_from_container(
    "dummy",
    worker,
    version="1.0.0",
    description="Sleeps, then moves a file into /output/result. For quick end-to-end checks.",
    output_dir="/output",
    # The seed's image runs as root and moves a file out of /etc: it needs both.
    security={"runAsNonRoot": False, "readOnlyRootFilesystem": False},
    limits={"timeout": "10m", "outputSize": "16Mi"},
    inputs=[
        {
            "name": "env",
            "kind": "env",
            "description": "dotenv with SOURCE, DESTINATION and SLEEPTIME",
            "keys": [
                {"name": "SOURCE", "required": True, "description": "file to move"},
                {"name": "DESTINATION", "required": True, "description": "where to move it (under /output/)"},
                {"name": "SLEEPTIME", "default": "10", "description": "seconds to sleep first"},
            ],
        }
    ],
    outputs=[{"name": "result", "kind": "file", "path": "/output/result", "description": "the moved file"}],
)
