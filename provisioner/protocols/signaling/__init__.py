"""EDC data plane signaling (JSON-LD; EDC 0.5 - 0.17, Tractus-X): routes, wire shapes, registration and callbacks."""
