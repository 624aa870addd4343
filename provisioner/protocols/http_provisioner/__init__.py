"""EDC's control-plane HTTP provisioner (``provision-http``, EDC 0.10 - 0.15): routes, wire shapes, callbacks."""
