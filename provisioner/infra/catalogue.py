"""The provider's asset catalogue: WorkflowAssets from a directory of asset files and/or registered
through the admin API (table ``assets``), keyed by EDC asset id. Files win over registrations."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from provisioner.infra.models import RegisteredAsset
from templates import WorkflowAsset, load_directory, parse_document


@dataclass(frozen=True)
class Catalogue:
    assets: dict[str, WorkflowAsset] = field(default_factory=dict)  # by asset name, from files
    edc_map: dict[str, str] = field(default_factory=dict)  # EDC asset id -> asset name

    @classmethod
    def load(cls, directory: Path | None, edc_map: dict[str, str] | None = None) -> Catalogue:
        assets = load_directory(directory) if directory else {}
        return cls(assets=assets, edc_map=dict(edc_map or {}))

    def resolve(self, edc_asset_id: str, sessions: sessionmaker[Session] | None = None) -> WorkflowAsset | None:
        """The WorkflowAsset that an EDC asset id stands for, or None when we do not offer it."""
        found = self.assets.get(self.edc_map.get(edc_asset_id, edc_asset_id))
        if found is not None or sessions is None:
            return found
        with sessions() as session:
            row = session.get(RegisteredAsset, edc_asset_id)
            return parse_document(row.spec, f"assets/{edc_asset_id}") if row else None

    def by_names(self, names: list[str], sessions: sessionmaker[Session]) -> list[WorkflowAsset]:
        """Assets by name (files first, then registrations); unknown names are left out."""
        found = {n: self.assets[n] for n in names if n in self.assets}
        missing = [n for n in names if n not in found]
        if missing:
            with sessions() as session:
                rows = session.scalars(select(RegisteredAsset).where(RegisteredAsset.asset_name.in_(missing)))
                for row in rows:
                    found.setdefault(row.asset_name, parse_document(row.spec, f"assets/{row.edc_asset_id}"))
        return [found[n] for n in names if n in found]
