"""Every label and annotation name we put on Kubernetes and Argo objects, and their fixed values: one owner for
this vocabulary, imported by the compiler, the consumer API and the provisioner alike. Plain constants, no
imports: the consumer API reads them without loading the compiler (and Hera with it)."""

from __future__ import annotations

from enum import StrEnum

GROUP = "workflow-middlelayer.io"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_NAME = "app.kubernetes.io/name"  # which component an object belongs to (e.g. the tenant API)
LABEL_ASSET = f"{GROUP}/asset"
LABEL_TENANT = f"{GROUP}/tenant"
LABEL_JOB = f"{GROUP}/job"
ANNOTATION_ASSET = f"{GROUP}/asset-spec"
ANNOTATION_ASSET_NAME = f"{GROUP}/asset-name"
ANNOTATION_NAMES = f"{GROUP}/argo-names"
ANNOTATION_IDEMPOTENCY = f"{GROUP}/idempotency-key"  # its sha256: the key is the consumer's string
# Set by the consumer API on each job's Workflow.
ANNOTATION_REQUEST = f"{GROUP}/request-sha256"
ANNOTATION_ENV_DIGESTS = f"{GROUP}/env-sha256"  # {input name: sha256 of its dotenv text}
ANNOTATION_INPUT_DIGESTS = f"{GROUP}/input-sha256"  # {input name: sha256 as uploaded, or the staged tree digest}
LABEL_WEBHOOK = f"{GROUP}/webhook"  # a job whose completion event is to be sent: WebhookMark (consumer API)
LABEL_FINISH = f"{GROUP}/finish"  # a job whose end the API has yet to settle: FinishMark (consumer API)
LABEL_GRANT = f"{GROUP}/grant"  # a grant's token Secret (provisioner)
ANNOTATION_ENV_CHECKSUM = f"{GROUP}/env-checksum"  # the API pods' environment (provisioner)
MANAGER = "workflow-middlelayer"


class WebhookMark(StrEnum):
    """Values of :data:`LABEL_WEBHOOK`: the delivery loop lists the pending ones."""

    PENDING = "pending"
    SETTLED = "settled"


class FinishMark(StrEnum):
    """Values of :data:`LABEL_FINISH`: what the API still owes a finished job (its pods' logs stored, its pods
    deleted, its own S3 keys revoked) is listed by the pending ones."""

    PENDING = "pending"
    DONE = "done"


# A write under way that holds part of the storage quota, kept by several API replicas in one shared Lease
# (consumer API): the annotation's name ends in the reservation's id, its value is "<bytes> <expiry epoch>".
ANNOTATION_RESERVATION_PREFIX = f"reservation.{GROUP}/"
# A replica sealing a finished job's outputs (consumer API): "<replica id> <epoch>", renewed while it seals.
ANNOTATION_SEALING = f"{GROUP}/sealing"
# Limits a finished job hit (consumer API): JSON {what: detail}, e.g. {"log": "cut at 8388608 bytes"}.
ANNOTATION_CUTS = f"{GROUP}/cuts"
