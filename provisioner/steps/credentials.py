"""Steps that make and hand out a tenant's credentials: the two MinIO users' keys and users, the executor's S3
Secret, and each active grant's token.

Secrets and their truth: each grant's token and the tenant's S3 secret keys exist in full only in Secrets of the
tenant namespace (``wml-grant-<id>``, ``wml-api-env``, ``wml-s3``); the database keeps the tokens' sha256. The keys
are written to their Secrets before the MinIO users are made with them, so a crash in between makes the users with
the keys already held (a Secret lost behind our back gets a new key, and the user is updated to it); a missing
token Secret gets a new token before any answer could have carried the old one.
"""

from __future__ import annotations

import secrets
from concurrent.futures import ThreadPoolExecutor

from provisioner import manifests
from provisioner.infra import audit
from provisioner.infra.models import Tenant
from provisioner.infra.secrets import grant_token, secret_value
from provisioner.steps.model import GrantSet, Made, S3Keys, StepContext
from templates.names import API_ENV_SECRET, S3_SECRET


def choose_s3_keys(ctx: StepContext) -> Made:
    """The two MinIO users' secret keys: read back from their Secrets, or made new. Written to the Secrets (steps
    ``s3_secret`` and ``config``) before the users are made (``s3_user``), so a key a user has is always held by a
    Secret, and a crash in between makes the users with the keys already written."""
    svc, snap = ctx.svc, ctx.snap
    api_key = secret_value(svc.kube.get("v1", "Secret", API_ENV_SECRET, snap.namespace), "WML_API_S3_SECRET_KEY")
    exec_key = secret_value(svc.kube.get("v1", "Secret", S3_SECRET, snap.namespace), "secretKey")
    # A key lost behind our back (or a tenant made before the executor had a user of its own).
    renewed = api_key is None or exec_key is None or exec_key == api_key
    api_key = api_key or secrets.token_urlsafe(30)
    if exec_key is None or exec_key == api_key:
        exec_key = secrets.token_urlsafe(30)
    return Made(s3_keys=S3Keys(api_secret_key=api_key, exec_secret_key=exec_key, renewed=renewed))


def ensure_s3_users(ctx: StepContext) -> None:
    """The MinIO users, with the keys their Secrets hold. Before the API's Deployment: making a user costs MinIO
    and us an Argon2 key derivation each (CPU-bound, ~0.1-0.2 s), which run alongside a new pod's start slowed
    it more than they took (measured with ``python -m tests.bench signaling``)."""
    svc, snap, spec = ctx.svc, ctx.snap, ctx.spec
    prefix = svc.settings.s3_prefix_for(snap.tenant_id)
    # Side by side: MinIO's admin API derives an Argon2 key per request on both ends (~0.2 s per call here).
    with ThreadPoolExecutor(2, thread_name_prefix="s3-user") as pool:
        made = [
            pool.submit(svc.storage.ensure_user, snap.s3_user, spec.s3_secret_key, prefix),
            pool.submit(svc.storage.ensure_user, snap.exec_user, spec.exec_secret_key, prefix, executor=True),
        ]
        for future in made:
            future.result()


def write_s3_secret(ctx: StepContext) -> None:
    # The executor's Secret only: the API's environment is written whole, tokens included, by "config".
    ctx.svc.kube.apply(manifests.executor_secret(ctx.spec))


def ensure_tokens(ctx: StepContext) -> Made:
    """Each active grant's own token (made once, kept in its Secret); the database keeps their digests."""
    svc, snap = ctx.svc, ctx.snap
    digests = []
    assets_of = dict(snap.grant_assets)
    scopes = []
    for grant_id in snap.active_grant_ids:
        token = grant_token(svc.kube, snap.namespace, grant_id)
        if token is None:
            token = secrets.token_urlsafe(32)
            svc.kube.apply(manifests.grant_token_secret(ctx.spec, grant_id, token))
        digests.append(manifests.token_sha256(token))
        if grant_id in assets_of:
            scopes.append((digests[-1], assets_of[grant_id]))
    joined = manifests.token_sha256(",".join(sorted(digests)))
    with svc.sessions.begin() as session:
        tenant = session.get(Tenant, snap.tenant_id)
        if tenant is not None and (tenant.token_sha256 != joined or tenant.s3_user != snap.s3_user):
            tenant.token_sha256 = joined
            tenant.s3_user = snap.s3_user
            audit.record(session, "credentials_set", snap.tenant_id, s3_user=snap.s3_user, grants=len(digests))
    assets = svc.catalogue.by_names(list(snap.asset_names), svc.sessions)
    return Made(grants=GrantSet(tuple(sorted(digests)), snap.contract_id, tuple(assets), tuple(sorted(scopes))))
