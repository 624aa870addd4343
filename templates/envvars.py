"""Environment values for the worker: dotenv parsing and the key policy.

Values reach the worker as container environment variables from a per-job Secret (``envFrom``), never through a
shell or Argo's template engine, so no quoting, expansion or evaluation happens between the consumer and the program.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Mapping

from dotenv.parser import parse_stream

ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}\Z")
MAX_VALUE_BYTES = 32 * 1024

# Keys that change how programs are loaded or interpreted; refused unless the asset allows them.
UNSAFE_KEYS = frozenset(
    {
        "PATH",
        "IFS",
        "ENV",
        "BASH_ENV",
        "SHELLOPTS",
        "BASHOPTS",
        "PS4",
        "GCONV_PATH",
        "HOSTALIASES",
        "LOCALDOMAIN",
        "RES_OPTIONS",
        "TMPDIR",
        "NLSPATH",
        "MALLOC_CHECK_",
        "PYTHONPATH",
        "PYTHONHOME",
        "PYTHONSTARTUP",
        "PYTHONINSPECT",
        "PYTHONUSERBASE",
        "NODE_OPTIONS",
        "NODE_PATH",
        "PERL5LIB",
        "PERL5OPT",
        "PERLLIB",
        "RUBYOPT",
        "RUBYLIB",
        "JAVA_TOOL_OPTIONS",
        "_JAVA_OPTIONS",
        "JDK_JAVA_OPTIONS",
        "CLASSPATH",
        "GIT_EXEC_PATH",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "OPENSSL_CONF",
        "KUBERNETES_SERVICE_HOST",
        "KUBERNETES_SERVICE_PORT",
        "HOME",
    }
)
UNSAFE_PREFIXES = ("LD_", "DYLD_", "ARGO_", "GLIBC_", "WML_")


class EnvError(ValueError):
    """A dotenv document or an environment key/value that cannot be accepted."""


def is_unsafe_key(key: str) -> bool:
    return key in UNSAFE_KEYS or key.startswith(UNSAFE_PREFIXES)


def parse_dotenv(text: str) -> dict[str, str]:
    """Parse a dotenv document strictly: every non-comment line must be ``KEY=VALUE``."""
    if "\x00" in text:
        raise EnvError("dotenv contains a NUL byte")
    values: dict[str, str] = {}
    for binding in parse_stream(io.StringIO(text)):
        line = binding.original.line
        if binding.error:
            raise EnvError(f"line {line}: not KEY=VALUE")
        if binding.key is None:
            continue
        if binding.value is None:
            raise EnvError(f"line {line}: {binding.key!r} has no '='")
        if binding.key in values:
            raise EnvError(f"line {line}: {binding.key!r} is set twice")
        values[binding.key] = binding.value
    return values


def check_env(
    values: Mapping[str, str],
    *,
    allowed: Iterable[str] | None,
    allow_unsafe: Iterable[str] = (),
) -> dict[str, str]:
    """Validate keys and values against an input's policy; returns a plain copy."""
    allowed_set = set(allowed) if allowed is not None else None
    unsafe_ok = set(allow_unsafe)
    checked: dict[str, str] = {}
    for key, value in values.items():
        if not ENV_KEY.match(key):
            raise EnvError(f"{key!r} is not a valid environment variable name")
        if allowed_set is not None and key not in allowed_set:
            raise EnvError(f"{key!r} is not one of the keys this asset accepts: {sorted(allowed_set)}")
        if is_unsafe_key(key) and key not in unsafe_ok:
            raise EnvError(f"{key!r} changes how programs load and is not allowed by this asset")
        if not isinstance(value, str):
            raise EnvError(f"{key!r} must be a string")
        if "\x00" in value:
            raise EnvError(f"{key!r} contains a NUL byte")
        if len(value.encode()) > MAX_VALUE_BYTES:
            raise EnvError(f"{key!r} is longer than {MAX_VALUE_BYTES} bytes")
        checked[key] = value
    return checked
