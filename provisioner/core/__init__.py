"""The protocol-free core: what every protocol asks of us, and the tenant lifecycle behind it.

- ``grants``: the one entry the protocol adapters call (provision, deprovision, start, suspend, resume, end),
  returning typed outcomes; ``store`` persists what it accepts, ``identity`` (with ``policy``) decides who the
  consumer is, ``flows`` waits for a started flow's tenant;
- ``lifecycle``: what a tenant needs (``decide``) and running it; ``plan``: which steps a run runs (pure);
- ``delivery``: answers to connectors once the steps are done; ``scheduler``: one coalescing task per tenant and the
  reconciler; ``sweeper``: the storage safety net."""
