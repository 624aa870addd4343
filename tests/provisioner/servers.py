"""A stand-in for the EDC connector over real HTTP (callback receiver + the management API's consumer
lookup). Servers are started with devstack.servers.ThreadedServer."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from devstack.servers import ThreadedServer
from devstack.wait import wait_for  # re-exported for the EDC tests

__all__ = ["API_KEY", "Call", "EdcStub", "ThreadedServer", "wait_for"]


API_KEY = "test-management-key"


@dataclass
class Call:
    path: str
    transfer_process_id: str
    kind: str
    body: dict[str, Any]
    api_key: str | None
    at: float


@dataclass
class EdcStub:
    """What the tests need of an EDC connector, over real HTTP."""

    calls: list[Call] = field(default_factory=list)
    rejected: list[Call] = field(default_factory=list)  # wrong or missing x-api-key
    transfers: dict[str, tuple[str, str]] = field(default_factory=dict)  # tp -> (contract id, consumer id)
    states: dict[str, str] = field(default_factory=dict)  # tp -> transfer state (default PROVISIONING)
    assets: dict[str, str] = field(default_factory=dict)  # tp -> asset id (default: none recorded)
    fail_next: int = 0  # answer the next N callbacks with 503
    management_down: bool = False  # answer every management API lookup with 503
    registrations: list[tuple[str, dict[str, Any], dict[str, str]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/management/callback/{tp}/{kind}")
        async def callback(tp: str, kind: str, request: Request) -> Response:
            call = Call(
                request.url.path, tp, kind, await request.json(), request.headers.get("x-api-key"), time.monotonic()
            )
            with self.lock:
                if call.api_key != API_KEY:
                    self.rejected.append(call)
                    return JSONResponse({"error": "unauthorized"}, status_code=401)
                if self.fail_next > 0:
                    self.fail_next -= 1
                    return JSONResponse({"error": "try later"}, status_code=503)
                self.calls.append(call)
            return Response(status_code=204)

        async def signal(tp: str, kind: str, request: Request) -> Response:
            raw = await request.body()
            call = Call(
                request.url.path,
                tp,
                kind,
                await request.json() if raw else {},
                request.headers.get("x-api-key") or request.headers.get("authorization"),
                time.monotonic(),
            )
            with self.lock:
                if self.fail_next > 0:
                    self.fail_next -= 1
                    return JSONResponse({"error": "try later"}, status_code=503)
                self.calls.append(call)
            return Response(status_code=204 if kind in ("provisioned", "complete", "fail") else 200)

        # Data plane registrations: signaling (JSON-LD upsert on the control API), DPS (PUT on management v4).
        @app.post("/control/v1/dataplanes")
        @app.put("/management/v4/dataplanes")
        async def register(request: Request) -> Response:
            with self.lock:
                self.registrations.append((request.url.path, await request.json(), dict(request.headers)))
            return Response(status_code=200)

        @app.get("/control/v1/dataplanes")
        async def dataplanes() -> Response:
            with self.lock:
                known = {b["@id"]: b for p, b, _ in self.registrations if p == "/control/v1/dataplanes"}
            # as EDC lists them: JSON-LD, one-element arrays compacted to scalars
            return JSONResponse([{**b, "state": "AVAILABLE"} for b in known.values()])

        # Data plane signaling: the control API's transfer process callbacks.
        @app.post("/control/transferprocess/{tp}/{kind}")
        async def signaling_callback(tp: str, kind: str, request: Request) -> Response:
            return await signal(tp, kind, request)

        # Eclipse Data Plane Signaling: the control plane's data flow callbacks.
        @app.post("/dps/transfers/{tp}/dataflow/{kind}")
        async def dps_callback(tp: str, kind: str, request: Request) -> Response:
            return await signal(tp, kind, request)

        @app.get("/management/v3/transferprocesses/{tp}")
        async def transfer(tp: str, request: Request) -> Response:
            if request.headers.get("x-api-key") != API_KEY:
                return JSONResponse({"error": "unauthorized"}, status_code=401)
            if self.management_down:
                return JSONResponse({"error": "down"}, status_code=503)
            if tp not in self.transfers and tp not in self.states:
                return JSONResponse([{"message": "not found"}], status_code=404)
            await asyncio.sleep(0.01)
            return JSONResponse(
                {
                    "@id": tp,
                    "@type": "TransferProcess",
                    "state": self.states.get(tp, "PROVISIONING"),
                    "contractId": self.transfers.get(tp, ("", ""))[0],
                    **({"assetId": self.assets[tp]} if tp in self.assets else {}),
                    "@context": {"@vocab": "https://w3id.org/edc/v0.0.1/ns/"},
                }
            )

        @app.get("/management/v3/contractagreements/{cid}")
        async def agreement(cid: str, request: Request) -> Response:
            if request.headers.get("x-api-key") != API_KEY:
                return JSONResponse({"error": "unauthorized"}, status_code=401)
            for contract, consumer in self.transfers.values():
                if contract == cid:
                    return JSONResponse({"@id": cid, "edc:consumerId": consumer, "edc:providerId": "provider"})
            return JSONResponse([{"message": "not found"}], status_code=404)

        return app

    def register(self, tp: str, consumer: str, asset: str, contract: str | None = None) -> None:
        """A transfer as the connector records it: provisioning, for ``asset``, under an agreement with ``consumer``."""
        with self.lock:
            self.transfers[tp] = (contract or f"contract-{tp}", consumer)
            self.assets[tp] = asset
            self.states.setdefault(tp, "PROVISIONING")

    def end(self, tp: str, state: str = "DEPROVISIONING") -> None:
        with self.lock:
            self.states[tp] = state

    def provisions(self, tp: str | None = None) -> list[Call]:
        with self.lock:
            return [c for c in self.calls if c.kind == "provision" and (tp is None or c.transfer_process_id == tp)]

    def signals(self, kind: str, tp: str | None = None) -> list[Call]:
        """Signaling callbacks of one kind (``provisioned``, ``complete``, ``fail``; DPS ``started``…)."""
        with self.lock:
            return [c for c in self.calls if c.kind == kind and (tp is None or c.transfer_process_id == tp)]

    def deprovisions(self, tp: str | None = None) -> list[Call]:
        with self.lock:
            return [c for c in self.calls if c.kind == "deprovision" and (tp is None or c.transfer_process_id == tp)]
