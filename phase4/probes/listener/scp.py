"""The DICOM sidecar listener: a C-STORE SCP (with Verification) that receives copies of what is
sent to the AI and what the AI returns, and turns each study into one probe record.

    PHASE4_LISTENER_CALLING_AE_TITLES=PACS \\
    phase4 probe dicom-listen --ae-title PHASE4 --port 11112 --deployment lesion-ai@site-a

Routing copies here is a PACS or router rule ("also send to PHASE4"); nothing is in the clinical
path, so a listener that is down delays no study. Received files stay in a private folder until
their study is extracted, then are deleted. Only features and the keyed pseudonym of the
StudyInstanceUID leave, through the spine's probe.

Defences (see ``phase4.probes.listener.settings``): associations only from allowed calling AE titles
(and addresses), rejected with A-ASSOCIATE-RJ "calling AE title not recognised" (PS3.8
§9.3.4); optional TLS; presentation contexts only in decodable transfer syntaxes
(``phase4.probes.listener.syntaxes``); C-STORE refusals with the failure statuses of PS3.4 Annex
GG.4 (0xA700 out of resources for the size limits, 0xA900 for UIDs that break the PS3.5 §9.1
grammar, 0xC210 for an instance that cannot be understood), logged without identifiers.

One study makes one record whatever the number of times it is sent: its record id is an HMAC
(site secret) of the deployment and the StudyInstanceUID, so the monitor's exactly-once
insert keeps the first assembly of a study and counts later ones as duplicates.
"""

from __future__ import annotations

import hmac
import logging
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag
from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import Verification

from phase4.probes.listener.assembly import StudyAssembler, StudyFolder, StudyTooLarge
from phase4.probes.listener.redact import redact_library_logs
from phase4.probes.listener.settings import ListenerSettings, allowed_peers
from phase4.probes.listener.syntaxes import decodable_transfer_syntaxes
from phase4.probes.listener.uids import UidError
from phase4.probes.probe import Probe
from phase4.probes.pseudonym import SITE_SECRET_ENV, resolve_site_secret

log = logging.getLogger("phase4.listener")

STATUS_SUCCESS = 0x0000
STATUS_OUT_OF_RESOURCES = 0xA700
STATUS_INVALID_UID = 0xA900
STATUS_CANNOT_UNDERSTAND = 0xC210
_PIXEL_DATA = Tag("PixelData")
_RECORD_ID_CONTEXT = b"phase4 listener record id\0"
# Version 8 (RFC 9562 custom) UUID layout: the record id looks like every other one.
_UUID_CLEAR = ~((0xF << 76) | (0x3 << 62))
_UUID8_SET = (0x8 << 76) | (0x2 << 62)


@dataclass(frozen=True)
class StudyRecord:
    """What one study becomes: the probe record's parts."""

    features: dict[str, Any]
    outputs: dict[str, Any]
    acquired_at: datetime | None
    error: str | None


Extractor = Callable[[StudyFolder], StudyRecord]


@dataclass
class ListenerStats:
    instances_received: int = 0
    instances_refused: int = 0
    associations_rejected: int = 0
    studies_recorded: int = 0  # records handed to the probe
    studies_failed: int = 0  # records with an error (part of the study unusable), or none made


class InstanceRefused(ValueError):
    """An instance refused before it was stored, with its C-STORE failure status."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def record_id_for(secret: bytes, deployment: str, study_uid: str) -> str:
    """The study's record id: HMAC-SHA256(secret, deployment, StudyInstanceUID) laid out as a
    UUID (32 hex digits). Stable across re-sends and listener restarts; says nothing of the
    study without the secret."""
    message = _RECORD_ID_CONTEXT + deployment.encode() + b"\0" + study_uid.encode()
    bits = int.from_bytes(hmac.digest(secret, message, "sha256")[:16], "big")
    return "%032x" % ((bits & _UUID_CLEAR) | _UUID8_SET)


def largest_element_bytes(ds: Dataset) -> int:
    """Length of the largest data element other than PixelData, without decoding values
    (received data sets hold raw elements until read)."""
    largest = 0
    tags = list(ds.keys())  # iterating the data set itself would decode every element
    for tag in tags:
        if tag == _PIXEL_DATA:
            continue
        element = ds.get_item(tag)
        if isinstance(element, RawDataElement):
            largest = max(largest, len(element.value or b""))
        elif element is not None and isinstance(element.value, bytes | str):
            largest = max(largest, len(element.value))
    return largest


class DicomListener:
    def __init__(
        self,
        *,
        probe: Probe,
        extract: Extractor,
        ae_title: str = "PHASE4",
        host: str = "127.0.0.1",
        port: int = 11112,
        idle_s: float = 10.0,
        workdir: Path | None = None,
        poll_s: float = 0.5,
        settings: ListenerSettings | None = None,
        calling_ae_titles: list[str] | None = None,
        ssl_context: ssl.SSLContext | None = None,
        site_secret: bytes | str | None = None,
    ) -> None:
        """``settings`` default to the environment (PHASE4_LISTENER_*); ``calling_ae_titles``
        and ``ssl_context`` override theirs. ``site_secret`` (or PHASE4_SITE_SECRET) keys the
        record ids; without one, a re-sent study makes a second record (logged)."""
        redact_library_logs()
        self.settings = settings or ListenerSettings()
        titles = self.settings.calling_ae_titles if calling_ae_titles is None else calling_ae_titles
        self.settings = self.settings.model_copy(update={"calling_ae_titles": titles})
        self._peers = allowed_peers(titles)
        self._ssl_context = ssl_context or self.settings.tls_context()
        self.probe = probe
        self.extract = extract
        self.host, self.port = host, port
        self.assembler = StudyAssembler(workdir, idle_s, self.settings.max_study_bytes)
        self.stats = ListenerStats()
        self.poll_s = poll_s
        self._record_key = _record_key(site_secret)
        self._ae = AE(ae_title=ae_title)
        self._ae.add_supported_context(Verification)
        syntaxes = decodable_transfer_syntaxes()
        for context in AllStoragePresentationContexts:
            self._ae.add_supported_context(context.abstract_syntax, syntaxes)
        self._ae.maximum_pdu_size = 0  # no limit on a PDU: instance size is bounded instead
        self._server: Any = None
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> DicomListener:
        if not self._peers:
            log.warning(
                "no calling AE title is allowed: every association will be refused "
                "(set PHASE4_LISTENER_CALLING_AE_TITLES)"
            )
        self._server = self._ae.start_server(
            (self.host, self.port),
            block=False,
            ssl_context=self._ssl_context,
            evt_handlers=[
                (evt.EVT_REQUESTED, self._on_requested),
                (evt.EVT_C_STORE, self._on_store),
            ],
        )
        self.port = int(self._server.server_address[1])
        self._worker = threading.Thread(target=self._run, name="phase4-listener", daemon=True)
        self._worker.start()
        tls = " (TLS)" if self._ssl_context else ""
        log.info("listening as %s on %s:%d%s", self._ae.ae_title, self.host, self.port, tls)
        return self

    def _on_requested(self, event: Any) -> None:
        """Reject an association whose calling AE title (or its address) is not allowed."""
        requestor = event.assoc.requestor
        title = str(requestor.primitive.calling_ae_title).strip()
        address = str(requestor.address)
        if title in self._peers and (self._peers[title] is None or address in self._peers[title]):
            return
        with self._lock:
            self.stats.associations_rejected += 1
        log.warning("rejected an association: calling AE title or address is not allowed")
        event.assoc.acse.send_reject(0x01, 0x01, 0x03)  # permanent, "calling AE title"
        # As pynetdicom's own rejection does: let the DUL send the A-ASSOCIATE-RJ before the
        # reactor closes the socket (else the peer sees an abort, not the reason).
        event.assoc.kill()

    def _on_store(self, event: Any) -> int:
        try:
            size = event.request.DataSet.getbuffer().nbytes
            if size > self.settings.max_instance_bytes:
                raise InstanceRefused(
                    STATUS_OUT_OF_RESOURCES,
                    f"instance of {size} bytes exceeds {self.settings.max_instance_bytes}",
                )
            ds = event.dataset
            largest = largest_element_bytes(ds)
            if largest > self.settings.max_element_bytes:
                raise InstanceRefused(
                    STATUS_OUT_OF_RESOURCES,
                    f"an element of {largest} bytes exceeds {self.settings.max_element_bytes}",
                )
            ds.file_meta = event.file_meta
            self.assembler.add(ds, size_bytes=size)
        except InstanceRefused as exc:
            return self._refuse(exc.status, str(exc))
        except StudyTooLarge as exc:
            return self._refuse(STATUS_OUT_OF_RESOURCES, str(exc))
        except UidError as exc:  # the message names the attribute, never the value
            return self._refuse(STATUS_INVALID_UID, str(exc))
        except Exception as exc:  # a file we cannot hold: refuse it, keep serving
            # Only the type: a decoding error's text can quote the data set's values.
            return self._refuse(STATUS_CANNOT_UNDERSTAND, type(exc).__name__)
        with self._lock:
            self.stats.instances_received += 1
        return STATUS_SUCCESS

    def _refuse(self, status: int, reason: str) -> int:
        with self._lock:
            self.stats.instances_refused += 1
        log.warning("refused an instance (status 0x%04X): %s", status, reason)
        return status

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            self.process_due()

    def process_due(self, force: bool = False) -> int:
        """Turn complete studies (all, with ``force``) into records; returns how many."""
        studies = self.assembler.due(float("inf") if force else None)
        for study in studies:
            self._record(study)
        return len(studies)

    def _record(self, study: StudyFolder) -> None:
        try:
            result = self.extract(study)
            record_id = None
            if self._record_key is not None:
                record_id = record_id_for(self._record_key, self.probe.deployment, study.study_uid)
            self.probe.record(
                features=result.features,
                outputs=result.outputs,
                study_uid=study.study_uid,
                acquired_at=result.acquired_at,
                error=result.error,
                record_id=record_id,
            )
            with self._lock:
                self.stats.studies_recorded += 1
                if result.error is not None:
                    self.stats.studies_failed += 1
        except Exception as exc:  # one bad study must not stop the listener
            with self._lock:
                self.stats.studies_failed += 1
            log.warning("study could not be recorded: %s", type(exc).__name__)
        finally:
            self.assembler.discard(study)

    def stop(self, flush: bool = True) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None
        self._stop.set()
        if self._worker is not None:
            self._worker.join(10)
        if flush:
            self.process_due(force=True)
        self.assembler.close()

    def __enter__(self) -> DicomListener:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _record_key(site_secret: bytes | str | None) -> bytes | None:
    try:
        return resolve_site_secret(site_secret)
    except ValueError:
        log.warning(
            "no site secret (%s) for the listener: a study sent twice makes two records",
            SITE_SECRET_ENV,
        )
        return None
