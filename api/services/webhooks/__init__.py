"""Signed job-completion webhooks (Standard Webhooks).

- :mod:`api.services.webhooks.signing` — secrets (``whsec_…``) and the ``webhook-signature`` header;
- :mod:`api.services.webhooks.targets` — which URLs may be called (no SSRF into the provider's network);
- :mod:`api.services.webhooks.config` — the tenant's default URL and its signing secrets, kept in S3;
- :mod:`api.services.webhooks.records` — one delivery record per job, kept in S3: the state survives restarts;
- :mod:`api.services.webhooks.dispatcher` — the loop that finds finished jobs and delivers their events.
"""
