"""Wire shapes, one module per connector dialect: ``http_provisioner`` (EDC <= 0.15), ``signaling``
(EDC data plane signaling, JSON-LD; EDC 0.5-0.17 and Tractus-X) and ``dps`` (Eclipse Data Plane Signaling,
plain JSON; EDC >= 0.18). Nothing outside these modules spells a field of those messages."""
