"""The WorkflowAsset: what a provider offers — a worker container, its hardware, its inputs and outputs.

Asset files use camelCase keys (``workingDir``, ``maxSize``), like Kubernetes manifests; unknown keys are
rejected so that a typo never silently drops a limit.
"""

from __future__ import annotations

import posixpath
import re
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Final, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from templates.envvars import ENV_KEY, UNSAFE_KEYS, is_unsafe_key
from templates.names import check_safe_name
from templates.quantity import parse_quantity

API_VERSION: Final = "workflow-middlelayer.io/v1"
KIND: Final = "WorkflowAsset"


def quantity(text: str) -> Decimal:
    """A Kubernetes quantity ("16Mi", "250m") as a number."""
    return parse_quantity(text)


_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?\Z")
_IMAGE = re.compile(r"^[a-z0-9][a-z0-9._/:-]*(?:@sha256:[a-f0-9]{64})?\Z")


class Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
        frozen=True,
        str_strip_whitespace=True,
    )


def _quantity(value: Any) -> str:
    text = str(value).strip()
    try:
        amount = parse_quantity(text)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{text!r} is not a Kubernetes quantity (e.g. 500m, 2, 1Gi)") from exc
    if amount < 0:
        raise ValueError(f"{text!r} must not be negative")
    return text


def _duration_seconds(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("must be seconds or a duration like 90s, 15m, 2h")
    if isinstance(value, int):
        seconds = value
    else:
        match = _DURATION.match(str(value).strip())
        if not match or not any(match.groups()):
            raise ValueError(f"{value!r} is not a duration (seconds, or like 90s, 15m, 2h)")
        h, m, s = (int(g or 0) for g in match.groups())
        seconds = h * 3600 + m * 60 + s
    if seconds <= 0:
        raise ValueError("must be positive")
    return seconds


def _abs_path(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL")
    if not value.startswith("/"):
        raise ValueError(f"{value!r} must be an absolute path")
    if any(part == ".." for part in value.split("/")):
        raise ValueError(f"{value!r} must not contain '..'")
    normalized = posixpath.normpath(value)
    if normalized == "/":
        raise ValueError("must not be the root directory")
    return normalized


Quantity = Annotated[str, BeforeValidator(_quantity)]
Seconds = Annotated[int, BeforeValidator(_duration_seconds)]
SafeName = Annotated[str, AfterValidator(check_safe_name)]
AbsPath = Annotated[str, AfterValidator(_abs_path)]


def _env_key(value: str) -> str:
    if not ENV_KEY.match(value):
        raise ValueError(f"{value!r} is not a valid environment variable name")
    return value


EnvKey = Annotated[str, AfterValidator(_env_key)]


class Worker(Model):
    """The container that does the work."""

    image: str = Field(description="Image reference; pin by digest (image@sha256:…) for reproducible jobs.")
    command: list[str] | None = Field(default=None, description="Entrypoint; the image's own when omitted.")
    args: list[str] | None = None
    working_dir: AbsPath | None = None
    env: dict[EnvKey, str] = Field(default_factory=dict, description="Fixed environment set by the provider.")
    output_dir: AbsPath | None = Field(
        default=None,
        description="Directory where outputs are written; mounted as a size-capped scratch volume.",
    )

    @model_validator(mode="after")
    def _check(self) -> Worker:
        if "\x00" in self.image or not _IMAGE.match(self.image):
            raise ValueError(f"image {self.image!r} is not a valid image reference")
        return self

    @property
    def normalized_image(self) -> str:
        """``name`` → ``docker.io/name:latest`` as the container runtime resolves it."""
        image = self.image
        name, _, digest = image.partition("@")
        first = name.split("/", 1)[0]
        if "/" not in name or not ("." in first or ":" in first or first == "localhost"):
            name = f"docker.io/{name}" if "/" in name else f"docker.io/library/{name}"
        if not digest and ":" not in name.rsplit("/", 1)[-1]:
            name = f"{name}:latest"
        return f"{name}@{digest}" if digest else name


class Gpu(Model):
    count: int = Field(ge=1, le=64)
    resource: str = Field(default="nvidia.com/gpu", pattern=r"^[a-z0-9.-]+/[a-z0-9.-]+$")


class Toleration(Model):
    key: str | None = None
    operator: Literal["Exists", "Equal"] = "Equal"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = Field(default=None, ge=0)


class Resources(Model):
    """What one job's worker needs; requests equal limits so a job gets exactly what the contract sells."""

    cpu: Quantity = "1"
    memory: Quantity = "512Mi"
    ephemeral_storage: Quantity | None = None
    gpu: Gpu | None = None
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=list)

    @model_validator(mode="after")
    def _positive(self) -> Resources:
        for field in ("cpu", "memory"):
            if parse_quantity(getattr(self, field)) <= Decimal(0):
                raise ValueError(f"{field} must be greater than zero")
        return self


class Limits(Model):
    timeout: Seconds = Field(default=3600, description="Wall-clock limit of a job (activeDeadlineSeconds).")
    retries: int = Field(default=0, ge=0, le=10)
    output_size: Quantity = Field(default="1Gi", description="Cap on the output directory's size.")
    max_upload_size: Quantity = Field(default="1Gi", description="Default cap of one uploaded input.")
    input_size: Quantity = Field(
        default="2Gi",
        description="Cap on the job's inputs as the worker sees them, archives unpacked (the size of the volume "
        "Argo downloads them into; the kubelet evicts a job past it).",
    )


class Security(Model):
    """Hardened by default: no privilege escalation, no capabilities, RuntimeDefault seccomp, a non-root user
    (65534 unless ``runAsUser`` names one) and a read-only root filesystem (with a writable /tmp and output
    directory). An asset that needs root or a writable image says so with ``false``."""

    run_as_non_root: bool = True
    run_as_user: int | None = Field(default=None, ge=0)
    run_as_group: int | None = Field(default=None, ge=0)
    read_only_root_filesystem: bool = True


class InputKind(StrEnum):
    FILE = "file"
    ARCHIVE = "archive"
    DIRECTORY = "directory"
    ENV = "env"


class EnvKeySpec(Model):
    name: EnvKey
    required: bool = False
    default: str | None = None
    description: str = ""


class Input(Model):
    """A named input the consumer provides before a job starts.

    ``file``: one file placed at ``path``. ``archive``: a zip or tar.gz unpacked into the directory ``path``.
    ``directory``: many files uploaded under the input's name, placed under ``path``. ``env``: values given
    as a dotenv upload and/or job parameters, passed to the worker as environment variables.
    """

    name: SafeName
    kind: InputKind
    path: AbsPath | None = None
    format: Literal["zip", "tar.gz"] | None = None
    required: bool = True
    max_size: Quantity | None = None
    description: str = ""
    keys: list[EnvKeySpec] | None = Field(
        default=None, description="env only: the keys a consumer may set; any safe key when omitted."
    )
    allow_unsafe_keys: list[EnvKey] = Field(
        default_factory=list,
        description="env only: keys such as LD_PRELOAD that this asset explicitly allows.",
    )

    @model_validator(mode="after")
    def _check(self) -> Input:
        if self.kind is InputKind.ENV:
            if self.path is not None or self.format is not None:
                raise ValueError("env inputs take no 'path' or 'format'")
            names = [k.name for k in self.keys or []]
            if len(names) != len(set(names)):
                raise ValueError("duplicate names in 'keys'")
            for key in names:
                if is_unsafe_key(key) and key not in self.allow_unsafe_keys:
                    raise ValueError(f"key {key!r} is unsafe; list it in allowUnsafeKeys to permit it")
        else:
            if self.path is None:
                raise ValueError(f"{self.kind.value} inputs need an absolute 'path'")
            if self.keys is not None or self.allow_unsafe_keys:
                raise ValueError("'keys' and 'allowUnsafeKeys' are for env inputs only")
            if self.kind is InputKind.ARCHIVE and self.format is None:
                object.__setattr__(self, "format", "tar.gz" if self.name.endswith((".tgz", ".tar.gz")) else "zip")
            if self.kind is not InputKind.ARCHIVE and self.format is not None:
                raise ValueError("'format' is for archive inputs only")
        return self

    @property
    def allowed_keys(self) -> list[str] | None:
        return None if self.keys is None else [k.name for k in self.keys]


class OutputKind(StrEnum):
    FILE = "file"
    DIRECTORY = "directory"


class Output(Model):
    name: SafeName
    kind: OutputKind = OutputKind.FILE
    path: AbsPath
    required: bool = True
    description: str = ""


class WorkflowAsset(Model):
    """One offer: a worker and the named files it consumes and produces."""

    api_version: Literal["workflow-middlelayer.io/v1"] = API_VERSION
    kind: Literal["WorkflowAsset"] = KIND
    name: SafeName
    version: str = Field(default="1", pattern=r"^[A-Za-z0-9._+-]{1,64}$")
    description: str = ""
    worker: Worker
    resources: Resources = Field(default_factory=Resources)
    limits: Limits = Field(default_factory=Limits)
    security: Security = Field(default_factory=Security)
    inputs: list[Input] = Field(default_factory=list)
    outputs: list[Output] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> WorkflowAsset:
        names = [i.name for i in self.inputs] + [o.name for o in self.outputs]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"input/output names must be unique; repeated: {', '.join(dupes)}")
        paths: dict[str, str] = {}
        items: list[Input | Output] = [*self.inputs, *self.outputs]
        for item in items:
            if item.path is None:
                continue
            if item.path in paths:
                raise ValueError(f"{item.name!r} and {paths[item.path]!r} use the same path {item.path}")
            paths[item.path] = item.name
        for key in self.worker.env:
            if key in UNSAFE_KEYS and key != "PATH":
                raise ValueError(f"worker.env: {key!r} is reserved")
        if self.worker.output_dir and self.worker.output_dir.rstrip("/") == "":
            raise ValueError("worker.outputDir must be a directory below /, not / itself")
        if self.outputs and not self.worker.output_dir:
            # Outputs are collected as the whole output directory (a volume), never path by path.
            raise ValueError("outputs need worker.outputDir: the directory they are written under")
        if self.worker.output_dir:
            root = self.worker.output_dir.rstrip("/") + "/"
            for out in self.outputs:
                if not out.path.startswith(root):
                    raise ValueError(f"output {out.name!r} ({out.path}) is not under worker.outputDir {root}")
        return self

    def input(self, name: str) -> Input:
        for item in self.inputs:
            if item.name == name:
                return item
        raise KeyError(name)

    def output(self, name: str) -> Output:
        for item in self.outputs:
            if item.name == name:
                return item
        raise KeyError(name)

    def upload_cap(self, item: Input) -> int:
        """Byte cap of one upload for ``item``."""
        return int(parse_quantity(item.max_size or self.limits.max_upload_size))
