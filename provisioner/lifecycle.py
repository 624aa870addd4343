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
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from provisioner import audit, identity, tenants
from provisioner.edc_client import EdcLookupError, Outcome
from provisioner.models import ACTIVE_GRANT_STATES, Grant, GrantState, Tenant, TenantState
from provisioner.schemas import ContentDataAddress, DeprovisionCallback, ProvisionCallback
from provisioner.services import Services
from provisioner.store import CONFLICT_RETRIES, TenantCollision, backoff, link_tenant

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
    "revoke",
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
    s3_user: str  # the API's MinIO user
    mode: str  # "apply", "teardown", "callbacks", "idle"
    grant_ids: tuple[int, ...]
    active_grant_ids: tuple[int, ...]
    asset_names: tuple[str, ...]
    contract_id: str

    @property
    def exec_user(self) -> str:
        """The executor's MinIO user (job inputs read, outputs and logs written; nothing else)."""
        return f"{self.s3_user}-exec"


def _secret_value(secret: dict[str, Any] | None, key: str) -> str | None:
    if not secret:
        return None
    if key in (secret.get("stringData") or {}):
        return str(secret["stringData"][key])
    raw = (secret.get("data") or {}).get(key)
    return base64.b64decode(raw).decode() if raw else None


# --- identity -------------------------------------------------------------------------------------------


def resolve_grant(svc: Services, grant_id: int) -> str | None:
    """Find the consumer of a grant received before it could be verified, by the one rule of
    :mod:`provisioner.identity`, and attach it to its tenant. Returns the tenant id."""
    with svc.sessions() as session:
        grant = session.get(Grant, grant_id)
        if grant is None or grant.state != GrantState.RECEIVED:
            return grant.tenant_id if grant else None
        grant_policy, transfer, asset_id = grant.policy, grant.transfer_process_id, grant.asset_id
    who: identity.Identity | None = None
    error = ""
    try:
        who = identity.resolve(svc, transfer, asset_id, grant_policy)
    except EdcLookupError as exc:  # EdcRejected included: a grant whose consumer is unknown never provisions
        error = str(exc)
    for attempt in range(CONFLICT_RETRIES):
        try:
            with svc.sessions.begin() as session:
                grant = session.get(Grant, grant_id)
                if grant is None or grant.state != GrantState.RECEIVED:
                    return grant.tenant_id if grant else None
                if who is None:
                    _grant_failed_attempt(svc, session, grant, error or "no consumer id found")
                    return None
                grant.contract_id = who.contract_id
                try:
                    link_tenant(session, grant, who.consumer_id, svc.settings)
                except TenantCollision as exc:
                    log.error("grant %s: %s", grant.id, exc)
                    grant.state, grant.error = GrantState.FAILED, str(exc)
                    return None
                audit.record(
                    session, "grant_linked", grant.tenant_id, grant.id, consumer_id=who.consumer_id, source=who.source
                )
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
            active_grant_ids=tuple(sorted(g.id for g in active)),
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
    base = tenants.TenantSpec(tenant=snap.tenant_id, namespace=ns, token_digests=(), s3_access_key="", s3_secret_key="")
    prefix = settings.s3_prefix_for(snap.tenant_id)
    with step("namespace"):
        kube.apply(tenants.namespace(settings, base))
    with step("s3_user"):
        # The secret keys live only in their Secrets: read back, or made new (a crash before the Secret
        # was written leaves a user whose key nobody holds; the new key replaces it).
        api_env = kube.get("v1", "Secret", tenants.API_ENV_SECRET, ns)
        api_key = _secret_value(api_env, "WML_API_S3_SECRET_KEY") or secrets.token_urlsafe(30)
        exec_key = _secret_value(kube.get("v1", "Secret", tenants.S3_SECRET, ns), "secretKey")
        if exec_key is None or exec_key == api_key:  # tenants made before the executor had a user of its own
            exec_key = secrets.token_urlsafe(30)
        svc.storage.ensure_user(snap.s3_user, api_key, prefix)
        svc.storage.ensure_user(snap.exec_user, exec_key, prefix, executor=True)
    base = replace(
        base,
        s3_access_key=snap.s3_user,
        s3_secret_key=api_key,
        exec_access_key=snap.exec_user,
        exec_secret_key=exec_key,
    )
    with step("s3_secret"):
        # The executor's Secret only: the API's environment is written whole, tokens included, by "config".
        kube.apply(tenants.config_objects(settings, base)[0])
    with step("token"):
        digests = _grant_tokens(svc, snap, base)
        joined = tenants.token_sha256(",".join(digests))
        with svc.sessions.begin() as session:
            tenant = session.get(Tenant, snap.tenant_id)
            if tenant is not None and (tenant.token_sha256 != joined or tenant.s3_user != snap.s3_user):
                tenant.token_sha256 = joined
                tenant.s3_user = snap.s3_user
                audit.record(session, "credentials_set", snap.tenant_id, s3_user=snap.s3_user, grants=len(digests))
    assets = svc.catalogue.by_names(list(snap.asset_names), svc.sessions)
    spec = replace(base, token_digests=digests, contract_id=snap.contract_id, assets=assets)
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
    with step("revoke"):
        _revoke_ended_grants(svc, snap)
    with step("ready"):
        _api_rolled_out(svc, snap)
        _mark_ready(svc, snap)


def _api_rolled_out(svc: Services, snap: Snapshot) -> None:
    """While API pods serve, a changed token set rolls them: no callback hands out a token (and no grant counts
    as ended) until every serving pod has the new set. A Deployment that never served has nothing to wait for."""
    deployment = svc.kube.get("apps/v1", "Deployment", tenants.API, snap.namespace)
    if deployment is None:
        return
    status, spec = deployment.get("status") or {}, deployment.get("spec") or {}
    wanted = int(spec.get("replicas", 1))
    if not status.get("availableReplicas") and not status.get("readyReplicas"):
        return
    rolled = (
        int(status.get("observedGeneration", 0)) >= int(deployment["metadata"].get("generation", 0))
        and int(status.get("updatedReplicas", 0)) == wanted
        and int(status.get("replicas", 0)) == wanted
        and int(status.get("availableReplicas", 0)) >= wanted
    )
    if not rolled:
        raise NotYet("the API's pods are rolling to the new token set")


def _grant_tokens(svc: Services, snap: Snapshot, base: tenants.TenantSpec) -> tuple[str, ...]:
    """Each active grant's own token (made once, kept in its Secret); returns their digests, sorted."""
    digests = []
    for grant_id in snap.active_grant_ids:
        name = tenants.grant_token_secret_name(grant_id)
        token = _secret_value(svc.kube.get("v1", "Secret", name, snap.namespace), "token")
        if token is None:
            token = secrets.token_urlsafe(32)
            svc.kube.apply(tenants.grant_token_secret(base, grant_id, token))
        digests.append(tenants.token_sha256(token))
    return tuple(sorted(digests))


def _revoke_ended_grants(svc: Services, snap: Snapshot) -> None:
    """Delete the token Secret of every grant that is no longer active (the API stopped accepting it above)."""
    selector = f"{tenants.LABEL_MANAGED_BY}={tenants.MANAGER},{tenants.LABEL_GRANT}"
    active = {tenants.grant_token_secret_name(g) for g in snap.active_grant_ids}
    for secret in svc.kube.list("v1", "Secret", snap.namespace, selector):
        if secret["metadata"]["name"] not in active:
            svc.kube.delete("v1", "Secret", secret["metadata"]["name"], snap.namespace)


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
        svc.storage.remove_user(snap.exec_user)
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
    for grant in provision:
        # Each grant's callback carries that grant's own token and no other.
        name = tenants.grant_token_secret_name(grant.id)
        token = _secret_value(svc.kube.get("v1", "Secret", name, namespace), "token")
        if token is None:
            raise NotYet(f"token Secret of grant {grant.id} missing; the tenant will be re-applied")
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
    result = svc.edc.provisioned(grant.transfer_process_id, body)
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
    result = svc.edc.deprovisioned(grant.transfer_process_id, body)
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
