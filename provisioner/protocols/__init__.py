"""The three ways an EDC connector reaches us, one folder each, every one with its ``routes`` (the HTTP surface),
``wire`` (the one owner of that protocol's JSON) and ``client`` (what we send back):

- ``http_provisioner``: EDC's control-plane HTTP provisioner (EDC 0.10 - 0.15), ``POST /edc/provision``;
- ``signaling``: EDC data plane signaling, JSON-LD (EDC 0.5 - 0.17, Tractus-X): we are the provider's data plane;
- ``dps``: Eclipse Data Plane Signaling, plain JSON (EDC >= 0.18, spec RC2 and RC3).

Adapters only translate: every route calls the one core entry (:mod:`provisioner.core.grants`) and renders its
typed outcome in its protocol's terms. ``common`` holds what the clients share, ``registrar`` keeps our data plane
registered with signaling and DPS control planes. No protocol imports another (import-linter)."""
