"""Fault suite: stack components killed and restarted under running jobs."""
