"""A job's ``ui_url`` opens that workflow in the Argo UI: the link follows the UI's own routes, read from the pinned
Argo module's UI source, and Argo Server answers that route with its UI page.

The local stack's Argo Server embeds a placeholder page instead of the real UI: the UI's npm build needs
``argo-ui`` as a git dependency, and the npm registry here serves only ``argo-ui@1.0.0`` (2019), not the version
Argo 4.0.5 pins. Argo Server serves its ``index.html`` for every UI route, placeholder or real, so the route check
holds for both.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from api.services.jobviews import ui_url
from api.settings import ApiSettings
from devstack.stack.launcher import StackInfo

UI = "https://argo.provider.example/argo/"


def settings(namespace: str, ui: str | None = UI) -> ApiSettings:
    return ApiSettings(
        tenant="t-1",
        namespace=namespace,
        s3_endpoint_url="http://127.0.0.1:9",
        s3_prefix="tenants/t-1",
        s3_access_key="a",
        s3_secret_key="b",
        token_sha256="0" * 64,
        argo_server_url="http://127.0.0.1:9",
        argo_ui_url=ui,
    )


def workflow_route(argo_src: Path) -> str:
    """The UI route of one workflow, e.g. ``/workflows/:namespace/:name``, as Argo's router defines it."""
    router = (argo_src / "ui" / "src" / "app-router.tsx").read_text()
    container = (argo_src / "ui" / "src" / "workflows" / "components" / "workflows-container.tsx").read_text()
    base = re.search(r"const workflowsUrl = uiUrl\('([^']+)'\);", router)
    assert base and re.search(r"<Route path=\{workflowsUrl\} component=\{workflows\.component\}", router)
    details = re.search(r"path=\{`\$\{props\.match\.path\}([^`]+)`\} component=\{WorkflowDetails\}", container)
    assert details, "Argo's UI no longer routes workflow details as this test expects"
    return f"/{base.group(1)}{details.group(1)}"


def test_ui_url_is_argos_workflow_details_route(argo_src: Path) -> None:
    route = workflow_route(argo_src)
    assert route == "/workflows/:namespace/:name"
    link = ui_url(settings("wml-t-1"), "job-0123456789ab")
    expected = UI.rstrip("/") + route.replace(":namespace", "wml-t-1").replace(":name", "job-0123456789ab")
    assert link == expected
    assert ui_url(settings("wml-t-1", ui=None), "job-0123456789ab") is None


def test_argo_server_serves_the_ui_route(stack: StackInfo, argo_src: Path) -> None:
    route = workflow_route(argo_src).replace(":namespace", "wml-t-1").replace(":name", "job-0123456789ab")
    page = httpx.get(stack.argo_server_url + route, timeout=10)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    # the same answer as the UI's root: Argo Server hands the route to its single-page UI
    assert page.text == httpx.get(stack.argo_server_url + "/", timeout=10).text
    # while an API path is not swallowed by the UI: Argo's API answers it (client auth: no token, 401 JSON)
    api = httpx.get(f"{stack.argo_server_url}/api/v1/workflows/wml-t-1", timeout=10)
    assert api.status_code == 401 and api.headers["content-type"].startswith("application/json")
