"""Signed job-completion webhooks (Standard Webhooks).

- :mod:`api.webhooks.signing` — secrets (``whsec_…``) and the ``webhook-signature`` header;
- :mod:`api.webhooks.targets` — which URLs may be called (no SSRF into the provider's network);
- :mod:`api.webhooks.config` — the tenant's default URL and its signing secrets, kept in S3;
- :mod:`api.webhooks.records` — one delivery record per job, kept in S3: the state survives restarts;
- :mod:`api.webhooks.dispatcher` — the loop that finds finished jobs and delivers their events.
"""
