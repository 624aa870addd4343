"""The demo `make run` plays: one EDC contract end to end on the local stack."""
