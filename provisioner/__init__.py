"""The provisioner: one isolated Kubernetes/Argo tenant per dataspace consumer, bound to its transfers.

Three entry points, one core, in layers (top to bottom; import-linter enforces them, see ``pyproject.toml``):

- ``app`` composes (the FastAPI app, the protocol clients, the scheduler and registrar), ``cli`` serves;
- ``protocols`` (``http_provisioner``, ``signaling``, ``dps``: routes, wire shapes, client each) and ``operator``
  (admin, health): adapters that only translate, calling the one core entry;
- ``web``: what those route modules share;
- ``core``: the one entry (``grants``), durable requests (``store``), identity, the lifecycle and its run plan, answers
  to connectors, the scheduler and the reconciler;
- ``steps``: the ordered, idempotent apply and teardown steps;
- ``manifests``: pure builders of a tenant's Kubernetes objects;
- ``infra``: settings, states, the database, Kubernetes, MinIO, the connector's management API.

Every name derived from a tenant is owned by :mod:`templates.names`, every label by :mod:`templates.labels`, the S3
layout (its policy globs included) by :mod:`templates.keys`.

Secrets: each grant's token lives in full only in its Secret in the tenant namespace; the API gets the
digests; the database keeps a digest of the set. The architecture, a reading order and the threat model:
``docs/architecture.md``; protocols and settings per EDC version: ``docs/operator-guide.md``.
"""
