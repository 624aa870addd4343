"""The provisioner's HTTP surface, one module per concern: ``edc_http`` (EDC's HTTP provisioner), ``signaling``
(data plane signaling, dialect A), ``dps`` (Eclipse Data Plane Signaling, dialect B), ``admin`` and ``health``;
``deps`` holds what they share."""
