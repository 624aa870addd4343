"""The EDC HTTP provisioner: one isolated Kubernetes/Argo tenant per consumer, bound to its contracts.

Protocol (EDC v0.11-v0.15 control-plane ``provision-http``; a request without ``type`` is a provision,
as older connectors send it; deprovision needs v0.11+). One endpoint, ``POST /edc/provision``:

=========================================  ======  ===================================================
request                                    status  meaning for EDC
=========================================  ======  ===================================================
new provision, persisted                   201     PROVISIONING_REQUESTED; our callback follows
same transferProcessId+resourceDefinition  200     (retry/duplicate) nothing is created twice
deprovision, known transfer (also repeats)  200     EDC marks the resource deprovisioned at once
malformed JSON, missing/invalid fields     400     fatal, nothing stored
asset not in our catalogue                 422     fatal, nothing stored
deprovision of an unknown transfer         404     fatal
state store unavailable                    503     EDC retries later (Retry-After)
=========================================  ======  ===================================================

Work runs in the background (one serialized task per tenant, threads for blocking I/O) and is resumed by
the reconciler after a restart; every step is idempotent (Kubernetes server-side apply, field manager
``workflow-middlelayer``; MinIO user/policy upserts) so a crash between any two steps is repaired.

Callback: ``POST {callbackAddress}/{transferProcessId}/provision`` with header ``x-api-key``; the
DataAddress is shape (a) of the protocol notes: ``HttpData`` whose ``baseUrl`` is the tenant API
(``WML_PROVISIONER_API_URL_TEMPLATE``) and ``authKey``/``authCode`` = ``Authorization``/``Bearer <token>``
with ``proxyPath/Method/QueryParams/Body`` on, so the provider's data plane forwards the consumer's calls;
every property name is under EDC's vocabulary (``https://w3id.org/edc/v0.0.1/ns/baseUrl``…), which is where
EDC's HTTP data plane looks. A request without ``type`` (EDC <= 0.10) for a transfer we know is a
deprovision when EDC's management API shows the transfer ending (503 while EDC cannot be asked).
``apiKeyJwt`` carries the same token; ``resourceName`` is unique per tenant and transfer. Retries with
exponential backoff; after ``callback_max_attempts`` the grant is ``failed`` (audit ``callback_failed``,
error log). Delivery is at-least-once: a crash between EDC's 2xx and our commit re-sends it.

Secrets: the consumer's token is made per tenant (``secrets.token_urlsafe``); the database keeps only its
sha256. In full it lives only in the tenant namespace's Secret ``wml-api-token`` (read back to re-send a
callback); the API gets only the hash (Secret ``wml-api-env``). The tenant's MinIO secret key lives only
in Secret ``wml-s3``. Teardown deletes both with the namespace; a later contract gets a new token.

Consumer identity: ``policy.assignee`` if present, else the management API (transfer process ->
contract agreement -> consumerId), else ``WML_PROVISIONER_FALLBACK_CONSUMER``; order configurable with
``WML_PROVISIONER_IDENTITY_SOURCES``. Contract end: the earliest upper bound of an ``inForceDate``-like
constraint in the policy, else ``WML_PROVISIONER_DEFAULT_LIFETIME_SECONDS``.

Assets: WorkflowAsset files from ``WML_PROVISIONER_ASSETS_DIR`` (EDC asset id = asset name, or mapped
by ``WML_PROVISIONER_ASSET_MAP``), plus assets registered with ``PUT /admin/assets/{edc asset id}``
(YAML/JSON body, validated; stored in the database). Admin routes need ``Authorization: Bearer
<WML_PROVISIONER_ADMIN_TOKEN>`` and are off without it; ``/healthz``, ``/readyz`` (database, Kubernetes,
MinIO) and ``/metrics`` are open.

Run one replica per database (per-tenant serialization is in-process). Modules: ``settings``, ``models``
and ``db`` (+ ``migrations/``, Alembic), ``schemas`` (wire), ``policy``, ``catalogue``, ``store`` (request
path), ``lifecycle`` (steps), ``scheduler`` (background + reconciler), ``tenants`` (manifests), ``kube``,
``storage`` (MinIO), ``edc_client``, ``access`` (tenant API env/token read-back), ``app``, ``cli``, ``demo``.
"""
