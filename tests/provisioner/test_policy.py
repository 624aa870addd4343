"""Reading EDC's opaque policy: assignee and contract end, in Jackson and JSON-LD shapes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from provisioner.core.policy import assignee, contract_end

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def test_assignee_plain_and_jsonld() -> None:
    assert assignee({"assignee": "BPNL000CONSUMER"}) == "BPNL000CONSUMER"
    assert assignee({"odrl:assignee": {"@id": "did:web:consumer"}}) == "did:web:consumer"
    assert assignee({"http://www.w3.org/ns/odrl/2/assignee": [{"@id": "c-1"}]}) == "c-1"
    assert assignee({"assignee": None, "target": "dummy"}) is None
    assert assignee(None) is None
    assert assignee({"assignee": {"weird": [1, 2]}}) is None


def test_contract_end_jackson_shape() -> None:
    policy = {
        "permissions": [
            {
                "edctype": "dataspaceconnector:permission",
                "action": {"type": "USE"},
                "constraints": [
                    {
                        "edctype": "AtomicConstraint",
                        "leftExpression": {
                            "edctype": "dataspaceconnector:literalexpression",
                            "value": "https://w3id.org/edc/v0.0.1/ns/inForceDate",
                        },
                        "operator": "LEQ",
                        "rightExpression": {
                            "edctype": "dataspaceconnector:literalexpression",
                            "value": "2027-01-31T00:00:00Z",
                        },
                    }
                ],
            }
        ],
        "unknownThing": {"deep": [1, {"x": None}]},
    }
    assert contract_end(policy, NOW) == datetime(2027, 1, 31, tzinfo=UTC)


def test_contract_end_odrl_relative_and_earliest() -> None:
    policy = {
        "odrl:permission": [
            {
                "odrl:constraint": [
                    {
                        "odrl:leftOperand": {"@id": "edc:inForceDate"},
                        "odrl:operator": {"@id": "odrl:lteq"},
                        "odrl:rightOperand": "contractAgreement+30d",
                    },
                    {"odrl:leftOperand": "inForceDate", "odrl:operator": "odrl:lt", "odrl:rightOperand": "2026-12-01"},
                    {
                        "odrl:leftOperand": "inForceDate",
                        "odrl:operator": "odrl:gteq",
                        "odrl:rightOperand": "2020-01-01",
                    },
                ]
            }
        ]
    }
    assert contract_end(policy, NOW) == datetime(2026, 12, 1, tzinfo=UTC)
    only_relative = {
        "constraint": {"leftOperand": "expiry", "operator": "lteq", "rightOperand": "contractAgreement+2h"}
    }
    assert contract_end(only_relative, NOW) == NOW + timedelta(hours=2)


def test_contract_end_absent_or_garbage() -> None:
    assert contract_end({}, NOW) is None
    assert contract_end(None, NOW) is None
    assert contract_end({"leftOperand": "inForceDate", "operator": "lteq", "rightOperand": "soon"}, NOW) is None
    assert contract_end({"leftOperand": "purpose", "operator": "eq", "rightOperand": "2027-01-01"}, NOW) is None
