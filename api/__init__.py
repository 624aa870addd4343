"""The consumer API of one tenant (FastAPI), and its client and CLI. Layers, each importing only those below it
(an import-linter contract in pyproject.toml holds them):

- :mod:`api.app`, :mod:`api.server` — composition: the app factory, and the process tenant API pods run;
  :mod:`api.cli` — the ``workflow-api`` CLI (serve, or use an API as a consumer);
- :mod:`api.routes` — thin FastAPI routes, and their dependencies (:mod:`api.routes.deps`);
- :mod:`api.web` — HTTP plumbing: tokens and the gate, problem documents, request logs, form and Range parsing;
  :mod:`api.services` — the domain operations: staging inputs, starting jobs, job views, logs, outputs, receipts,
  the orphan sweeper, webhooks;
- :mod:`api.backends` — the clients of S3, Argo Server and Kubernetes, and the start lock;
- :mod:`api.core` — exceptions, request/response bodies, states, Argo's objects as read;
  :mod:`api.settings` — ``WML_API_*``; :mod:`api.client` — the consumer's client (imports nothing of the server).
"""
