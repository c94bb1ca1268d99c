"""manifest.json: the SHA-256 of every file of an export, and the signed audit head if any.

:func:`verify_manifest` recomputes the digests and names every file that was changed, removed
or added since the export; with the key it also checks the signed head's signature (checking the
head against the live audit trail is ``phase4.monitor.store.audit.verify_chain(session,
head=...)``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from phase4.monitor.store.audit import AuditHeadError, SignedHead, canonical_json, head_signature_ok

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "phase4-export-manifest/1"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 16), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _files(directory: Path) -> list[str]:
    return sorted(
        p.relative_to(directory).as_posix()
        for p in directory.rglob("*")
        if p.is_file() and p.name != MANIFEST_NAME
    )


def build_manifest(directory: Path, meta: dict[str, Any]) -> dict[str, Any]:
    files = {name: sha256_file(directory / name) for name in _files(directory)}
    return {
        "format": MANIFEST_FORMAT,
        **meta,
        "algorithm": "sha256",
        "files": [{"path": name, "sha256": digest} for name, digest in files.items()],
    }


def manifest_signature(manifest: dict[str, Any], key: bytes) -> str:
    """HMAC-SHA256 of the manifest's canonical JSON without its ``signature`` field."""
    body = {k: v for k, v in manifest.items() if k != "signature"}
    return hmac.new(key, canonical_json(body).encode(), hashlib.sha256).hexdigest()


def write_manifest(directory: Path, manifest: dict[str, Any], key: bytes | None = None) -> str:
    """Write manifest.json (signed with ``key`` if given); return its own SHA-256, which the
    audit trail records."""
    if key is not None:
        manifest = {**manifest, "signature": manifest_signature(manifest, key)}
    text = json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    data = text.encode()
    (directory / MANIFEST_NAME).write_bytes(data)
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class ManifestVerdict:
    ok: bool
    files_checked: int
    changed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    head_signature_ok: bool | None = None  # None: no head in the manifest, or no key given
    signature_ok: bool | None = None  # the manifest's own HMAC; None: unsigned or no key
    problems: list[str] = field(default_factory=list)

    def describe(self) -> str:
        if self.ok:
            extra = ""
            if self.signature_ok:
                extra += "; manifest signature genuine"
            if self.head_signature_ok:
                extra += "; signed audit head genuine"
            return f"export intact: {self.files_checked} files match the manifest{extra}"
        return "; ".join(self.problems)


def verify_manifest(
    directory: Path, *, key: bytes | None = None, manifest_sha256: str | None = None
) -> ManifestVerdict:
    """Check every file of an export against its manifest.

    With ``key`` (the audit key the export was made with) also check the manifest's own
    signature and the signed audit head's; with ``manifest_sha256`` (from the export's entry in
    the audit trail) check that the manifest itself is the one recorded. Without either, an
    attacker who rewrites a file *and* the manifest is not caught: the manifest alone proves
    only that nothing changed by accident. A missing or unreadable manifest is a failure (a
    verdict, not an exception).
    """
    directory = Path(directory)
    path = directory / MANIFEST_NAME
    try:
        raw = path.read_bytes()
        manifest = json.loads(raw.decode("utf-8"))
    except (OSError, ValueError) as exc:
        return ManifestVerdict(False, 0, problems=[f"cannot read {path}: {exc}"])
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        return ManifestVerdict(False, 0, problems=[f"{path} is not a phase4 export manifest"])
    listed = {
        str(f.get("path")): str(f.get("sha256"))
        for f in manifest.get("files", [])
        if isinstance(f, dict)
    }
    present = set(_files(directory))
    changed: list[str] = []
    missing: list[str] = []
    for name, digest in sorted(listed.items()):
        target = directory / name
        if name not in present:
            missing.append(name)
        elif sha256_file(target) != digest:
            changed.append(name)
    unexpected = sorted(present - set(listed))
    problems = [f"{n} was changed (its SHA-256 differs from the manifest)" for n in changed]
    problems += [f"{n} is missing" for n in missing]
    problems += [f"{n} is not in the manifest" for n in unexpected]
    if manifest_sha256 is not None and hashlib.sha256(raw).hexdigest() != manifest_sha256.lower():
        problems.append(
            f"{MANIFEST_NAME} is not the one recorded in the audit trail (SHA-256 differs)"
        )
    manifest_ok: bool | None = None
    if key is not None:
        if "signature" not in manifest:
            manifest_ok = False
            problems.append(f"{MANIFEST_NAME} is not signed, but a key was given")
        else:
            manifest_ok = hmac.compare_digest(
                manifest_signature(manifest, key), str(manifest["signature"])
            )
            if not manifest_ok:
                problems.append(
                    f"{MANIFEST_NAME}'s signature does not match: it was altered, or the key "
                    "is not the one the export was made with"
                )
    signature: bool | None = None
    head_data = manifest.get("audit_head")
    if head_data is not None and key is not None:
        try:
            signature = head_signature_ok(SignedHead.from_dict(head_data), key)
        except AuditHeadError as exc:
            signature = False
            problems.append(f"signed audit head: {exc}")
        else:
            if not signature:
                problems.append(
                    "the signed audit head's signature does not match: altered, or another key"
                )
    return ManifestVerdict(
        ok=not problems,
        files_checked=len(listed),
        changed=changed,
        missing=missing,
        unexpected=unexpected,
        head_signature_ok=signature,
        signature_ok=manifest_ok,
        problems=problems,
    )
