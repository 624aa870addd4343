"""What every layer of the provisioner stands on: settings (in sections), states and the transition table, the
database (models, sessions, audit), typed step errors, and the clients of Kubernetes (``kube``, ``secrets``,
``leader``), MinIO (``s3users``), the connector's management API (``connector``) and the tenant API (``apiprobe``);
``notify`` is the port through which the core tells connectors anything; ``services`` holds them all, built once."""
