"""The operator's HTTP surface: the admin API (``admin``; tenants, grants, audit, assets, teardown), health and
metrics (``health``), and the admin views they answer with (``views``)."""
