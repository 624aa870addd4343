"""The provisioning and teardown steps: an explicit, ordered registry (:mod:`.registry`) of plain functions.

- :mod:`.model` — what steps work from and hand on (snapshot, products, context, the step record);
- :mod:`.admission` — start-slot admission of new tenants;
- :mod:`.credentials` — MinIO keys and users, the executor's Secret, grant tokens;
- :mod:`.objects` — the tenant's Kubernetes objects and token revocation;
- :mod:`.apipods` — reading how the tenant API's pods are doing;
- :mod:`.readiness` — the API answers, then grants move to ready or ended;
- :mod:`.grants` — a grant's end and the notice it is owed;
- :mod:`.teardown` — everything of a tenant removed.
"""

from provisioner.steps.model import Made, Product, Snapshot, Step, StepContext, StepFailed
from provisioner.steps.registry import APPLY, TEARDOWN, run_steps

__all__ = ["APPLY", "TEARDOWN", "Made", "Product", "Snapshot", "Step", "StepContext", "StepFailed", "run_steps"]
