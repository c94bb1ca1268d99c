"""Regulatory exports: post-market surveillance report, incident register with
reporting clocks, the audit trail as FHIR AuditEvents, and a manifest of SHA-256 digests.

See docs/EXPORTS.md. ``export_deployment`` makes one export; ``verify_manifest`` checks one.
"""

from phase4.alerts.export.core import (
    FORMATS,
    ExportError,
    ExportResult,
    export_deployment,
    parse_formats,
)
from phase4.alerts.export.manifest import ManifestVerdict, verify_manifest

__all__ = [
    "FORMATS",
    "ExportError",
    "ExportResult",
    "ManifestVerdict",
    "export_deployment",
    "parse_formats",
    "verify_manifest",
]
