"""Loading assets from YAML, JSON (current or legacy format) and Python (Hera) files.

Every problem is reported as (file, field path, reason); nothing but :class:`AssetError` escapes.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from templates.asset import WorkflowAsset
from templates.legacy import LegacyAsset, convert, is_legacy

MAX_DOCUMENT_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Problem:
    source: str
    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.source}: {self.field or '<document>'}: {self.reason}"


class AssetError(ValueError):
    """One or more problems with an asset document."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def _field_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and not part.startswith(("function-", "function")):
            out += f".{part}" if out else part
    return out


def _problems(source: str, exc: ValidationError) -> list[Problem]:
    problems = []
    for err in exc.errors(include_url=False):
        reason = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            reason = "unknown field"
        problems.append(Problem(source, _field_path(err["loc"]), reason))
    return problems


def parse_document(document: Any, source: str = "<asset>") -> WorkflowAsset:
    """Validate an already-decoded document (current or legacy format)."""
    if not isinstance(document, dict):
        raise AssetError([Problem(source, "", "an asset must be a mapping/object")])
    try:
        if is_legacy(document):
            return convert(LegacyAsset.model_validate(document))
        return WorkflowAsset.model_validate(document)
    except ValidationError as exc:
        raise AssetError(_problems(source, exc)) from None
    except (ValueError, TypeError) as exc:  # conversion of a valid legacy file into an invalid asset
        raise AssetError([Problem(source, "", str(exc))]) from None


def parse_text(text: str, source: str = "<asset>") -> WorkflowAsset:
    """Parse YAML or JSON text (JSON is YAML, but JSON errors read better from the json module)."""
    if len(text.encode()) > MAX_DOCUMENT_BYTES:
        raise AssetError([Problem(source, "", f"document larger than {MAX_DOCUMENT_BYTES} bytes")])
    if "\x00" in text:
        raise AssetError([Problem(source, "", "document contains a NUL byte")])
    try:
        is_json = text.lstrip().startswith(("{", "["))
        document = json.loads(text) if is_json else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise AssetError([Problem(source, "", f"not valid YAML/JSON: {exc}".splitlines()[0])]) from None
    except RecursionError:
        raise AssetError([Problem(source, "", "document nested too deeply")]) from None
    return parse_document(document, source)


def load_python(path: Path) -> WorkflowAsset:
    """Import a Python asset module and return its module-level ``ASSET`` (see templates.authoring)."""
    name = f"_wml_asset_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise AssetError([Problem(str(path), "", "cannot import this file")])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except AssetError as exc:
        raise AssetError([Problem(str(path), p.field, p.reason) for p in exc.problems]) from None
    except Exception as exc:  # an author's module may raise anything; report it, never a traceback
        raise AssetError([Problem(str(path), "", f"importing failed: {type(exc).__name__}: {exc}")]) from None
    finally:
        sys.modules.pop(name, None)
    asset = getattr(module, "ASSET", None)
    if not isinstance(asset, WorkflowAsset):
        raise AssetError([Problem(str(path), "ASSET", "module must define ASSET = asset_from_container(...)")])
    return asset


def load_file(path: str | Path) -> WorkflowAsset:
    path = Path(path)
    if path.suffix == ".py":
        return load_python(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise AssetError([Problem(str(path), "", f"cannot read: {exc}")]) from None
    return parse_text(text, str(path))


def load_directory(directory: str | Path) -> dict[str, WorkflowAsset]:
    """All asset files of a directory (``*.yaml``, ``*.yml``, ``*.json``, ``*.py``) keyed by asset name."""
    assets: dict[str, WorkflowAsset] = {}
    problems: list[Problem] = []
    for path in sorted(Path(directory).iterdir()):
        if path.suffix not in {".yaml", ".yml", ".json", ".py"} or path.name.startswith(("_", ".")):
            continue
        try:
            asset = load_file(path)
        except AssetError as exc:
            problems.extend(exc.problems)
            continue
        if asset.name in assets:
            problems.append(Problem(str(path), "name", f"asset {asset.name!r} is defined twice"))
        assets[asset.name] = asset
    if problems:
        raise AssetError(problems)
    return assets
