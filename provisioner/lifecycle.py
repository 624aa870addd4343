"""The tenant lifecycle: every step is idempotent, so a crash between any two steps is repaired by
running the same function again (the reconciler does).

Secrets and their truth: the consumer's API token and the tenant's S3 secret key exist in full only in
Secrets of the tenant namespace (``wml-api-token``, ``wml-s3``); the database keeps the token's sha256.
A retried callback reads the token back from that Secret. If a crash left a MinIO user without its
Secret, the next run makes a new secret key and updates the user; if the token Secret is missing, a
new token is made before any callback could have carried the old one.
"""

from __future__ import annotations

import base64
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from provisioner import audit, policy, tenants
from provisioner.edc_client import EdcLookupError, Outcome
from provisioner.models import ACTIVE_GRANT_STATES, Grant, GrantState, Tenant, TenantState
from provisioner.schemas import ContentDataAddress, DeprovisionCallback, ProvisionCallback
from provisioner.services import Services
from provisioner.store import CONFLICT_RETRIES, backoff, link_tenant

log = logging.getLogger(__name__)

APPLY_STEPS = (
    "namespace",
    "s3_user",
    "s3_secret",
    "token",
    "rbac",
    "quota",
    "network",
    "config",
    "api",
    "templates",
    "ready",
)
TEARDOWN_STEPS = ("delete_namespace", "delete_s3_user", "delete_objects", "namespace_gone", "deleted")
NAMESPACE_WAIT_SECONDS = 20.0


class NotYet(Exception):
    """Progressing, nothing wrong: look again shortly (e.g. a namespace still terminating)."""


@dataclass(frozen=True)
class Snapshot:
    tenant_id: str
    namespace: str
    consumer_id: str
    s3_user: str
    mode: str  # "apply", "teardown", "callbacks", "idle"
    grant_ids: tuple[int, ...]
    asset_names: tuple[str, ...]
    contract_id: str


def _secret_value(secret: dict | None, key: str) -> str | None:
    if not secret:
        return None
    if key in (secret.get("stringData") or {}):
        return str(secret["stringData"][key])
    raw = (secret.get("data") or {}).get(key)
    return base64.b64decode(raw).decode() if raw else None


# --- identity -------------------------------------------------------------------------------------------


def resolve_grant(svc: Services, grant_id: int) -> str | None:
    """Find the consumer of a received grant and attach it to its tenant. Returns the tenant id."""
    settings = svc.settings
    with svc.sessions() as session:
        grant = session.get(Grant, grant_id)
        if grant is None or grant.state != GrantState.RECEIVED:
            return grant.tenant_id if grant else None
        grant_policy, transfer = grant.policy, grant.transfer_process_id
    consumer: str | None = None
    contract: str | None = None
    source = ""
    errors: list[str] = []
    for source in settings.identity_sources:
        if source == "assignee":
            consumer = policy.assignee(grant_policy)
        else:
            try:
                consumer, contract = svc.edc.consumer_of(transfer)
            except EdcLookupError as exc:
                errors.append(str(exc))
        if consumer:
            break
    if consumer is None and settings.fallback_consumer:
        consumer, source = settings.fallback_consumer, "fallback"
    for attempt in range(CONFLICT_RETRIES):
        try:
            with svc.sessions.begin() as session:
                grant = session.get(Grant, grant_id)
                if grant is None or grant.state != GrantState.RECEIVED:
                    return grant.tenant_id if grant else None
                if consumer is None:
                    _grant_failed_attempt(svc, session, grant, "; ".join(errors) or "no consumer id found")
                    return None
                grant.contract_id = contract
                link_tenant(session, grant, consumer, settings)
                audit.record(session, "grant_linked", grant.tenant_id, grant.id, consumer_id=consumer, source=source)
                return grant.tenant_id
        except IntegrityError:
            if attempt == CONFLICT_RETRIES - 1:
                raise
    return None


def _grant_failed_attempt(svc: Services, session: Session, grant: Grant, error: str) -> None:
    grant.attempts += 1
    grant.error = error
    if grant.attempts >= svc.settings.work_max_attempts:
        grant.state = GrantState.FAILED
        audit.record(session, "grant_failed", grant.tenant_id, grant.id, error=error, attempts=grant.attempts)
        log.error("grant %s failed after %s attempts: %s", grant.id, grant.attempts, error)
    else:
        grant.next_attempt_at = svc.clock() + backoff(svc.settings, grant.attempts)
        audit.record(session, "grant_retry", grant.tenant_id, grant.id, error=error, attempts=grant.attempts)


# --- the tenant -------------------------------------------------------------------------------------------


def run_tenant(svc: Services, tenant_id: str, force: bool = False) -> None:
    """Bring one tenant to what its grants call for: objects applied, callbacks sent, or torn down."""
    try:
        for _ in range(3):  # teardown, then re-provision if a new grant arrived meanwhile
            snap = _snapshot(svc, tenant_id, force)
            if snap is None:
                return
            if snap.mode == "teardown":
                _teardown(svc, snap)
                force = True
                continue
            if snap.mode == "apply":
                _apply(svc, snap)
            break
        _callbacks(svc, tenant_id)
    except NotYet as exc:
        with svc.sessions.begin() as session:
            tenant = session.get(Tenant, tenant_id)
            if tenant is not None:
                tenant.next_attempt_at = svc.clock() + timedelta(seconds=1)
                tenant.error = str(exc)
    except Exception as exc:
        _tenant_failed_attempt(svc, tenant_id, exc)


def _snapshot(svc: Services, tenant_id: str, force: bool) -> Snapshot | None:
    now = svc.clock()
    with svc.sessions.begin() as session:
        tenant = session.get(Tenant, tenant_id)
        if tenant is None:
            return None
        if not force and tenant.next_attempt_at is not None and tenant.next_attempt_at > now:
            return None
        grants = list(session.scalars(select(Grant).where(Grant.tenant_id == tenant_id)))
        for grant in grants:
            if grant.state in ACTIVE_GRANT_STATES and grant.expires_at is not None and grant.expires_at <= now:
                grant.state = GrantState.DEPROVISIONING
                grant.ended_by = "expiry"
                audit.record(session, "grant_expired", tenant_id, grant.id, expires_at=grant.expires_at.isoformat())
        active = [g for g in grants if g.state in ACTIVE_GRANT_STATES]
        ending = [g for g in grants if g.state == GrantState.DEPROVISIONING]
        if tenant.state == TenantState.FAILED and not force:
            mode = "idle"
        elif tenant.state == TenantState.TEARING_DOWN or (not active and tenant.state != TenantState.DELETED):
            if tenant.state != TenantState.TEARING_DOWN:
                tenant.state = TenantState.TEARING_DOWN
                tenant.attempts = 0
                audit.record(
                    session,
                    "teardown_started",
                    tenant_id,
                    reason=",".join(sorted({g.ended_by or "none" for g in ending})) or "no grants",
                )
            mode = "teardown"
        elif tenant.state == TenantState.DELETED and active:
            tenant.state = TenantState.PENDING
            tenant.generation += 1
            mode = "apply"
        elif not active:
            mode = "idle" if tenant.state == TenantState.DELETED else "teardown"
        elif tenant.state != TenantState.READY or any(g.state == GrantState.PROVISIONING for g in grants) or ending:
            tenant.state = TenantState.PENDING
            mode = "apply"
        else:
            mode = "callbacks"
        tenant.expires_at = max((g.expires_at for g in active if g.expires_at), default=None)
        contract = next((g.contract_id for g in sorted(active, key=lambda g: g.id) if g.contract_id), "") or ""
        return Snapshot(
            tenant_id=tenant_id,
            namespace=tenant.namespace,
            consumer_id=tenant.consumer_id,
            s3_user=f"wml-{tenant_id}",
            mode=mode,
            grant_ids=tuple(g.id for g in [*active, *ending]),
            asset_names=tuple(sorted({g.asset_name for g in active})),
            contract_id=contract,
        )


def _tenant_failed_attempt(svc: Services, tenant_id: str, exc: Exception) -> None:
    error = f"{type(exc).__name__}: {exc}"[:2000]
    step = getattr(exc, "step", "unknown")
    svc.metrics.step_failures.labels(step=step).inc()
    with svc.sessions.begin() as session:
        tenant = session.get(Tenant, tenant_id)
        if tenant is None:
            return
        tenant.attempts += 1
        tenant.error = error
        if tenant.attempts >= svc.settings.work_max_attempts:
            tenant.state = TenantState.FAILED
            audit.record(session, "tenant_failed", tenant_id, step=step, error=error, attempts=tenant.attempts)
            log.error("tenant %s failed after %s attempts at %s: %s", tenant_id, tenant.attempts, step, error)
        else:
            tenant.next_attempt_at = svc.clock() + backoff(svc.settings, tenant.attempts)
            audit.record(session, "step_failed", tenant_id, step=step, error=error, attempts=tenant.attempts)
            log.warning("tenant %s: step %s failed (attempt %s): %s", tenant_id, step, tenant.attempts, error)


class _Step:
    """Runs the crash hook before a step and tags an exception with the step's name."""

    def __init__(self, svc: Services) -> None:
        self.svc = svc
        self.name = ""

    def __call__(self, name: str) -> _Step:
        self.name = name
        self.svc.step_hook(name)
        return self

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if isinstance(exc, Exception) and not hasattr(exc, "step"):
            exc.step = self.name  # type: ignore[attr-defined]


def _apply(svc: Services, snap: Snapshot) -> None:
    settings, kube = svc.settings, svc.kube
    step = _Step(svc)
    ns = snap.namespace
    base = tenants.TenantSpec(
        tenant=snap.tenant_id,
        namespace=ns,
        token_sha256="",
        s3_access_key="",
        s3_secret_key="",
        contract_id=snap.contract_id,
    )
    with step("namespace"):
        kube.apply(tenants.namespace(settings, base))
    with step("s3_user"):
        s3_secret = kube.get("v1", "Secret", tenants.S3_SECRET, ns)
        secret_key = _secret_value(s3_secret, "secretKey") or secrets.token_urlsafe(30)
        svc.storage.ensure_user(snap.s3_user, secret_key, settings.s3_prefix_for(snap.tenant_id))
    with step("s3_secret"):
        kube.apply(tenants.config_objects(settings, _spec(base, snap, "", secret_key))[0])
    with step("token"):
        token = _secret_value(kube.get("v1", "Secret", tenants.TOKEN_SECRET, ns), "token")
        if token is None:
            token = secrets.token_urlsafe(32)
            kube.apply(tenants.token_secret(base, token))
        digest = tenants.token_sha256(token)
        with svc.sessions.begin() as session:
            tenant = session.get(Tenant, snap.tenant_id)
            if tenant is not None and (tenant.token_sha256 != digest or tenant.s3_user != snap.s3_user):
                tenant.token_sha256 = digest
                tenant.s3_user = snap.s3_user
                audit.record(session, "credentials_set", snap.tenant_id, s3_user=snap.s3_user)
    spec = _spec(base, snap, digest, secret_key, svc.catalogue.by_names(list(snap.asset_names), svc.sessions))
    for name, objects in (
        ("rbac", tenants.rbac(spec)),
        ("quota", tenants.quota(settings, spec)),
        ("network", tenants.network_policies(settings, spec)),
        ("config", tenants.config_objects(settings, spec)),
        ("api", tenants.api_objects(settings, spec)),
    ):
        with step(name):
            for manifest in objects:
                kube.apply(manifest)
    with step("templates"):
        wanted = tenants.workflow_templates(settings, spec)
        for manifest in wanted:
            kube.apply(manifest)
        names = {m["metadata"]["name"] for m in wanted}
        selector = f"{tenants.LABEL_MANAGED_BY}={tenants.MANAGER},{tenants.LABEL_TENANT}={snap.tenant_id}"
        for existing in kube.list("argoproj.io/v1alpha1", "WorkflowTemplate", ns, selector):
            if existing["metadata"]["name"] not in names:
                kube.delete("argoproj.io/v1alpha1", "WorkflowTemplate", existing["metadata"]["name"], ns)
    with step("ready"):
        _mark_ready(svc, snap)


def _spec(
    base: tenants.TenantSpec, snap: Snapshot, digest: str, secret_key: str, assets: list | None = None
) -> tenants.TenantSpec:
    return tenants.TenantSpec(
        tenant=base.tenant,
        namespace=base.namespace,
        token_sha256=digest,
        s3_access_key=snap.s3_user,
        s3_secret_key=secret_key,
        contract_id=snap.contract_id,
        assets=assets or [],
    )


def _mark_ready(svc: Services, snap: Snapshot) -> None:
    with svc.sessions.begin() as session:
        tenant = session.get(Tenant, snap.tenant_id)
        if tenant is None:
            return
        grants = list(session.scalars(select(Grant).where(Grant.id.in_(snap.grant_ids))))
        for grant in grants:
            if grant.state == GrantState.PROVISIONING:
                grant.state = GrantState.CALLBACK
                grant.attempts = 0
                grant.next_attempt_at = None
                audit.record(session, "grant_ready", snap.tenant_id, grant.id, asset=grant.asset_name)
            elif grant.state == GrantState.DEPROVISIONING:
                _grant_ended(svc, session, grant)
        pending = session.scalars(
            select(Grant.id).where(Grant.tenant_id == snap.tenant_id, Grant.state == GrantState.PROVISIONING)
        ).first()
        if pending is None and tenant.state == TenantState.PENDING:
            tenant.state = TenantState.READY
            tenant.attempts = 0
            tenant.error = None
            tenant.next_attempt_at = None
            audit.record(session, "tenant_ready", snap.tenant_id, assets=list(snap.asset_names))


def _grant_ended(svc: Services, session: Session, grant: Grant) -> None:
    grant.state = GrantState.DEPROVISIONED
    if grant.ended_by == "deprovision" and svc.settings.deprovision_callback:
        grant.deprovision_callback = "due"
        grant.attempts = 0
        grant.next_attempt_at = None
    audit.record(session, "grant_deprovisioned", grant.tenant_id, grant.id, ended_by=grant.ended_by)


def _teardown(svc: Services, snap: Snapshot) -> None:
    settings, kube = svc.settings, svc.kube
    step = _Step(svc)
    with step("delete_namespace"):
        kube.delete("v1", "Namespace", snap.namespace)
    with step("delete_s3_user"):
        svc.storage.remove_user(snap.s3_user)
    with step("delete_objects"):
        if settings.retention == "delete":
            removed = svc.storage.delete_prefix(settings.s3_prefix_for(snap.tenant_id))
            if removed:
                with svc.sessions.begin() as session:
                    audit.record(session, "objects_deleted", snap.tenant_id, count=removed)
    with step("namespace_gone"):
        deadline = svc.clock() + timedelta(seconds=NAMESPACE_WAIT_SECONDS)
        while kube.get("v1", "Namespace", snap.namespace) is not None:
            if svc.clock() > deadline:
                raise NotYet(f"namespace {snap.namespace} is still terminating")
            time.sleep(0.25)
    with step("deleted"), svc.sessions.begin() as session:
        tenant = session.get(Tenant, snap.tenant_id)
        if tenant is None:
            return
        for grant in session.scalars(select(Grant).where(Grant.tenant_id == snap.tenant_id)):
            if grant.state == GrantState.DEPROVISIONING:
                _grant_ended(svc, session, grant)
        tenant.state = TenantState.DELETED
        tenant.token_sha256 = None
        tenant.attempts = 0
        tenant.error = None
        tenant.next_attempt_at = None
        audit.record(session, "tenant_deleted", snap.tenant_id, namespace=snap.namespace, retention=settings.retention)


# --- callbacks ----------------------------------------------------------------------------------------------


def _callbacks(svc: Services, tenant_id: str) -> None:
    now = svc.clock()
    with svc.sessions() as session:
        tenant = session.get(Tenant, tenant_id)
        if tenant is None:
            return
        due = (Grant.next_attempt_at.is_(None)) | (Grant.next_attempt_at <= now)
        provision = list(
            session.scalars(select(Grant).where(Grant.tenant_id == tenant_id, Grant.state == GrantState.CALLBACK, due))
        )
        deprovision = list(
            session.scalars(
                select(Grant).where(
                    Grant.tenant_id == tenant_id,
                    Grant.state == GrantState.DEPROVISIONED,
                    Grant.deprovision_callback == "due",
                    due,
                )
            )
        )
        namespace = tenant.namespace
    if provision:
        token = _secret_value(svc.kube.get("v1", "Secret", tenants.TOKEN_SECRET, namespace), "token")
        if token is None:
            raise NotYet("token Secret missing; the tenant will be re-applied")
        for grant in provision:
            _provision_callback(svc, grant, token)
    for grant in deprovision:
        _deprovision_callback(svc, grant)


def data_address(svc: Services, tenant_id: str, token: str) -> ContentDataAddress:
    """Shape (a) of the protocol notes: the provider's data plane proxies the consumer's calls."""
    return ContentDataAddress.http_data(
        baseUrl=svc.settings.api_url_for(tenant_id),
        authKey="Authorization",
        authCode=f"Bearer {token}",
        proxyPath="true",
        proxyMethod="true",
        proxyQueryParams="true",
        proxyBody="true",
    )


def _provision_callback(svc: Services, grant: Grant, token: str) -> None:
    assert grant.tenant_id is not None
    body = ProvisionCallback(
        resource_definition_id=grant.resource_definition_id,
        asset_id=grant.asset_id,
        resource_name=grant.resource_name,
        content_data_address=data_address(svc, grant.tenant_id, token),
        api_key_jwt=token,
        has_token=True,
    )
    svc.step_hook("callback")
    result = svc.edc.provisioned(grant.callback_address, grant.transfer_process_id, body)
    svc.metrics.callbacks.labels(kind="provision", outcome=result.outcome).inc()
    with svc.sessions.begin() as session:
        current = session.get(Grant, grant.id)
        if current is None or current.state != GrantState.CALLBACK:
            return
        current.attempts += 1
        if result.outcome == Outcome.OK:
            current.state = GrantState.PROVISIONED
            current.called_back_at = svc.clock()
            current.error = None
            svc.metrics.provision_seconds.observe((current.called_back_at - current.created_at).total_seconds())
            audit.record(session, "callback_sent", current.tenant_id, current.id, response=result.detail)
        elif result.outcome == Outcome.RETRY and current.attempts < svc.settings.callback_max_attempts:
            current.error = result.detail
            current.next_attempt_at = svc.clock() + backoff(svc.settings, current.attempts)
            audit.record(
                session,
                "callback_retry",
                current.tenant_id,
                current.id,
                response=result.detail,
                attempts=current.attempts,
            )
        else:
            current.state = GrantState.FAILED
            current.error = f"callback gave up: {result.detail}"
            audit.record(
                session,
                "callback_failed",
                current.tenant_id,
                current.id,
                response=result.detail,
                attempts=current.attempts,
            )
            log.error(
                "grant %s: provision callback to %s failed for good: %s",
                current.id,
                current.callback_address,
                result.detail,
            )


def _deprovision_callback(svc: Services, grant: Grant) -> None:
    body = DeprovisionCallback(provisioned_resource_id=grant.resource_name)
    result = svc.edc.deprovisioned(grant.callback_address, grant.transfer_process_id, body)
    svc.metrics.callbacks.labels(kind="deprovision", outcome=result.outcome).inc()
    with svc.sessions.begin() as session:
        current = session.get(Grant, grant.id)
        if current is None or current.deprovision_callback != "due":
            return
        current.attempts += 1
        if result.outcome == Outcome.OK:
            current.deprovision_callback = "done"
        elif result.outcome == Outcome.FATAL:
            # EDC marked the resource deprovisioned when we answered 200; it may not know this id.
            current.deprovision_callback = "rejected"
        elif current.attempts < svc.settings.callback_max_attempts:
            current.next_attempt_at = svc.clock() + backoff(svc.settings, current.attempts)
        else:
            current.deprovision_callback = "failed"
            log.error("grant %s: deprovision callback failed for good: %s", current.id, result.detail)
        audit.record(
            session,
            f"deprovision_callback_{current.deprovision_callback}"[:64],
            current.tenant_id,
            current.id,
            response=result.detail,
            attempts=current.attempts,
        )


def force_teardown(svc: Services, tenant_id: str) -> bool:
    with svc.sessions.begin() as session:
        tenant = session.get(Tenant, tenant_id)
        if tenant is None:
            return False
        for grant in session.scalars(select(Grant).where(Grant.tenant_id == tenant_id)):
            if grant.state in (*ACTIVE_GRANT_STATES, GrantState.RECEIVED, GrantState.FAILED):
                grant.state = GrantState.DEPROVISIONING
                grant.ended_by = "admin"
        if tenant.state != TenantState.DELETED:
            tenant.state = TenantState.TEARING_DOWN
            tenant.next_attempt_at = None
        audit.record(session, "teardown_forced", tenant_id)
    return True
