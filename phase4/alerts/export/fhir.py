"""The audit trail as a FHIR R4 Bundle (type ``collection``) of AuditEvent resources.

Built and validated with the ``fhir.resources`` R4B models (R4B's AuditEvent is R4's). Mapping
of one phase4 audit entry (see docs/EXPORTS.md for the table):

* ``type``: DICOM DCM 110106 "Export" for exports, else DCM 110100 "Application Activity";
  ``subtype``: the phase4 action (``urn:phase4:audit-action``, e.g. ``alert.acknowledge``).
* ``action``: C/R/U/D/E from the action's verb (:func:`fhir_action`).
* ``recorded``: the entry's time; ``outcome``: 0 (success: only committed actions are recorded).
* ``agent``: the actor, ``requestor`` true (every phase4 action is asked for by its actor).
* ``source.observer``: the phase4 monitor at the deployment's site.
* ``entity``: the object acted on (``urn:phase4:<entity type>`` / id), with the reason, old and
  new values, sequence number and both chain hashes as details, so a reader can recompute the
  chain. No patient is ever an entity: the trail holds no patient data.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from fhir.resources.R4B.auditevent import AuditEvent
from fhir.resources.R4B.bundle import Bundle

from phase4.monitor.store.audit import canonical_json

DCM = "http://dicom.nema.org/resources/ontology/DCM"
ACTION_SYSTEM = "urn:phase4:audit-action"
ACTOR_SYSTEM = "urn:phase4:actor"
ENTITY_TYPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
SOURCE_TYPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/security-source-type"
_NAMESPACE = uuid.UUID("6f1c1d36-8a57-4d0c-9a7e-2f3e5b1c0a44")

_VERBS = {
    "C": {"create", "add", "register", "open", "upload", "ingest"},
    "R": {"export", "read", "view", "download"},
    "U": {
        "update",
        "set",
        "change",
        "acknowledge",
        "resolve",
        "escalate",
        "close",
        "reset",
        "revoke",
        "accept",
        "review",
        "edit",
        "report",
    },
    "D": {"delete", "remove", "purge"},
    "E": {"start", "stop", "run", "verify", "sign", "detect", "execute"},
}


def fhir_action(action: str) -> str:
    """C/R/U/D/E for a phase4 action such as ``alert.resolve`` (its last dotted word).

    Unknown verbs map to E (execute): an application function, the most general code.
    """
    verb = action.rsplit(".", 1)[-1].strip().lower()
    for code, verbs in _VERBS.items():
        if verb in verbs:
            return code
    return "E"


def _detail(kind: str, value: Any) -> dict[str, str]:
    text = value if isinstance(value, str) else canonical_json(value)
    return {"type": kind, "valueString": text}


def audit_event(entry: Mapping[str, Any], *, observer: str) -> dict[str, Any]:
    """One AuditEvent (as a validated JSON dict) for one audit row as ``report._audit_row``."""
    action = str(entry["action"])
    is_export = action == "export" or action.endswith(".export")
    details = [_detail("phase4.seq", str(entry["seq"]))]
    for key in ("reason", "old_value", "new_value"):
        if entry.get(key) is not None:
            details.append(_detail(f"phase4.{key}", entry[key]))
    details += [
        _detail("phase4.prev_hash", entry["prev_hash"]),
        _detail("phase4.entry_hash", entry["entry_hash"]),
    ]
    resource = {
        "resourceType": "AuditEvent",
        "id": f"phase4-audit-{entry['seq']}",
        "type": {
            "system": DCM,
            "code": "110106" if is_export else "110100",
            "display": "Export" if is_export else "Application Activity",
        },
        "subtype": [{"system": ACTION_SYSTEM, "code": action, "display": action}],
        "action": fhir_action(action),
        "recorded": entry["at"],
        "outcome": "0",
        "agent": [
            {
                "who": {
                    "identifier": {"system": ACTOR_SYSTEM, "value": str(entry["actor"])},
                    "display": str(entry["actor"]),
                },
                "name": str(entry["actor"]),
                "requestor": True,
            }
        ],
        "source": {
            "site": observer,
            "observer": {"display": f"phase4 monitor ({observer})"},
            "type": [{"system": SOURCE_TYPE_SYSTEM, "code": "4", "display": "Application Server"}],
        },
        "entity": [
            {
                "what": {
                    "identifier": {
                        "system": f"urn:phase4:{entry['entity_type']}",
                        "value": str(entry["entity_id"]),
                    },
                    "display": f"{entry['entity_type']} {entry['entity_id']}",
                },
                "type": {"system": ENTITY_TYPE_SYSTEM, "code": "2", "display": "System Object"},
                "name": str(entry["entity_type"]),
                "detail": details,
            }
        ],
    }
    # Validate now: a resource that fhir.resources refuses never reaches a file.
    return AuditEvent.model_validate(resource).model_dump(mode="json", exclude_none=True)


def audit_bundle(
    entries: Sequence[Mapping[str, Any]], *, observer: str, timestamp: str, bundle_id: str
) -> dict[str, Any]:
    """A ``collection`` Bundle of the entries' AuditEvents, validated as an R4B Bundle."""
    bundle = {
        "resourceType": "Bundle",
        "id": bundle_id,
        "type": "collection",
        "timestamp": timestamp,
        "entry": [
            {
                "fullUrl": f"urn:uuid:{uuid.uuid5(_NAMESPACE, str(e['entry_hash']))}",
                "resource": audit_event(e, observer=observer),
            }
            for e in entries
        ],
    }
    if not bundle["entry"]:
        del bundle["entry"]
    return Bundle.model_validate(bundle).model_dump(mode="json", exclude_none=True)
