"""The provisioner: one isolated Kubernetes/Argo tenant per dataspace consumer, bound to its transfers.

Three entry points, one core. The protocol adapters translate a connector's messages into the core's terms
and the core's answers back (routes in ``routes/``, wire shapes in ``wire/``, outgoing calls in the notifiers):

- ``routes.edc_http``: EDC's control-plane HTTP provisioner (EDC 0.10 - 0.15), ``POST /edc/provision``;
- ``routes.signaling``: EDC data plane signaling, JSON-LD (EDC 0.5 - 0.17, Tractus-X): we are the data plane;
- ``routes.dps``: Eclipse Data Plane Signaling (EDC >= 0.18, spec RC2 and RC3).

The core: ``states`` (every state value, the one transition table), ``store`` (claims become grants, linked to
the consumer's tenant), ``identity`` (who the consumer is), ``flows`` (data-flow start/suspend/resume/end),
``lifecycle`` (what a tenant needs), ``steps`` (the ordered, idempotent apply and teardown steps), ``errors``
(typed outcomes), ``delivery`` (answers to connectors), ``scheduler`` (per-tenant serialized work, re-queues and
the reconciler), ``registrar`` (data plane registration). Infrastructure: ``kube``, ``storage`` (MinIO),
``edc_client`` and ``signaling_client`` (the notifiers), ``tenants`` (manifests), ``catalogue`` (assets), ``db``,
``models`` (+ ``migrations/``, Alembic), ``settings``, ``metrics``, ``audit``; ``app`` composes, ``cli`` serves.

Secrets: each grant's token lives in full only in its Secret in the tenant namespace; the API gets the
digests; the database keeps a digest of the set. The architecture and the threat model: ``docs/architecture.md``;
protocols and settings per EDC version: ``docs/operator-guide.md``.

Run one replica per database (per-tenant serialization is in-process).
"""
