"""``make run``: play one EDC contract end to end on the local stack.

1. bring up (or reuse) the local stack: Kubernetes, Argo, MinIO;
2. start the provisioner and a stand-in for the EDC connector (callback receiver + management API);
3. send EDC's provision request, wait for the callback with the tenant API's address and token;
4. serve that tenant's consumer API (as a local process: its pod image is not built here), upload the
   seed `dummy` job's env file, run the job, download its result;
5. send EDC's deprovision request and wait until the tenant is gone.

A development tool: it uses the test suite's stack launcher and EDC stand-in.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from pathlib import Path

import httpx


def main() -> None:
    from api.app import create_app as create_api
    from api.client import Client
    from api.settings import ApiSettings
    from provisioner import access, db
    from provisioner.app import PROVISION_PATH, create_app
    from provisioner.models import Tenant, TenantState
    from provisioner.services import Services
    from tests.provisioner.conftest import edc_request
    from tests.provisioner.helpers import stack_settings
    from tests.provisioner.servers import EdcStub, ThreadedServer, wait_for
    from tests.servers import serve
    from tests.stack.launcher import ensure_stack

    stack = ensure_stack()
    stub = EdcStub()
    consumer = f"demo-consumer-{uuid.uuid4().hex[:6]}"
    with tempfile.TemporaryDirectory() as tmp, ThreadedServer(stub.app()) as edc:
        settings = stack_settings(stack, f"sqlite:///{Path(tmp) / 'demo.db'}", edc.url)
        svc = Services.build(settings)
        db.migrate(svc.engine)
        try:
            with ThreadedServer(create_app(settings, services=svc)) as provisioner:
                print(f"provisioner on {provisioner.url}, EDC stand-in on {edc.url}")
                body = edc_request(consumer=consumer, callback=f"{edc.url}/management/callback")
                started = time.monotonic()
                answer = httpx.post(f"{provisioner.url}{PROVISION_PATH}", json=body, timeout=30)
                print(f"EDC -> provision {body['transferProcessId']}: {answer.status_code} {answer.json()}")
                call = wait_for(lambda: stub.provisions(body["transferProcessId"]), 120, what="callback")[0]
                address = call.body["contentDataAddress"]["properties"]
                token = call.body["apiKeyJwt"]
                print(f"callback after {time.monotonic() - started:.2f}s: resourceName={call.body['resourceName']}")
                print(f"  DataAddress HttpData baseUrl={address['baseUrl']} authKey={address['authKey']}")
                tenant = answer.json()["tenant"]

                env = access.tenant_api_env(svc.kube, settings, tenant)
                api_settings = ApiSettings(**{k.removeprefix("WML_API_").lower(): v for k, v in env.items()})
                with serve(create_api(api_settings)) as api_url, Client(api_url, token) as client:
                    print(f"tenant {tenant}: consumer API on {api_url}; assets: {[a['name'] for a in client.assets()]}")
                    client.upload_bytes(
                        "dummy", "env", b"SOURCE=/etc/os-release\nDESTINATION=/output/result\nSLEEPTIME=3\n"
                    )
                    job = client.start("dummy")
                    print(f"job {job['id']} started")
                    seen: list[str] = []

                    def show(state: str) -> None:
                        if not seen or seen[-1] != state:
                            seen.append(state)
                            print(f"  state {state}")

                    done = client.wait(job["id"], timeout=600, on_state=show)
                    print(f"job {job['id']}: {done['state']}")
                    if done["state"] == "COMPLETE":
                        result = client.download(job["id"], "result", Path(tmp) / "result").read_text()
                        print("result (first lines):\n  " + "\n  ".join(result.splitlines()[:3]))

                answer = httpx.post(
                    f"{provisioner.url}{PROVISION_PATH}", json={**body, "type": "deprovision"}, timeout=30
                )
                print(f"EDC -> deprovision: {answer.status_code}")

                def gone() -> bool:
                    with svc.sessions() as session:
                        row = session.get(Tenant, tenant)
                        return row is not None and row.state == TenantState.DELETED

                wait_for(gone, 180, interval=0.5, what="teardown")
                print(f"tenant {tenant} torn down: namespace, MinIO user and objects removed")
        finally:
            svc.close()


if __name__ == "__main__":
    main()
