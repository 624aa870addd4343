"""The consumer API's clients of what it runs on: S3 (:mod:`.s3`, :mod:`.s3upload`), Argo Server (:mod:`.argo`),
the Kubernetes API (:mod:`.kube`), and the start lock over it (:mod:`.startlock`). No HTTP routes, no domain rules."""
