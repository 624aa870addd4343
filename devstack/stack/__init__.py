"""The local real stack (Kubernetes, containerd, Argo Workflows, MinIO) used by tests and `make run`.

python -m devstack.stack up|down|status|env|build
"""

from .launcher import StackInfo, ensure_stack, is_healthy, stack_status, stop_stack

__all__ = ["StackInfo", "ensure_stack", "is_healthy", "stack_status", "stop_stack"]
