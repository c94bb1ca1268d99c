"""The DICOM sidecar listener: a C-STORE SCP (with Verification) that receives copies of what is
sent to the AI and what the AI returns, and turns each study into one probe record.

    phase4 probe dicom-listen --ae-title PHASE4 --port 11112 --deployment lesion-ai@site-a

Routing copies here is a PACS or router rule ("also send to PHASE4"); nothing is in the clinical
path, so a listener that is down delays no study. Received files stay in a private temporary
folder until their study is extracted, then are deleted. Only features and the keyed
pseudonym of the StudyInstanceUID leave, through the spine's probe.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import Verification

from probes.listener.assembly import StudyAssembler, StudyFolder
from probes.probe import Probe

log = logging.getLogger("phase4.listener")

STATUS_SUCCESS = 0x0000
STATUS_CANNOT_UNDERSTAND = 0xC210


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
    studies_recorded: int = 0
    studies_failed: int = 0


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
    ) -> None:
        self.probe = probe
        self.extract = extract
        self.host, self.port = host, port
        self.assembler = StudyAssembler(workdir, idle_s)
        self.stats = ListenerStats()
        self.poll_s = poll_s
        self._ae = AE(ae_title=ae_title)
        self._ae.add_supported_context(Verification)
        for context in AllStoragePresentationContexts:
            self._ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
        self._ae.maximum_pdu_size = 0  # no limit: large PET series
        self._server: Any = None
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> DicomListener:
        self._server = self._ae.start_server(
            (self.host, self.port), block=False, evt_handlers=[(evt.EVT_C_STORE, self._on_store)]
        )
        self.port = int(self._server.server_address[1])
        self._worker = threading.Thread(target=self._run, name="phase4-listener", daemon=True)
        self._worker.start()
        log.info("listening as %s on %s:%d", self._ae.ae_title, self.host, self.port)
        return self

    def _on_store(self, event: Any) -> int:
        try:
            ds = event.dataset
            ds.file_meta = event.file_meta
            self.assembler.add(ds)
            with self._lock:
                self.stats.instances_received += 1
            return STATUS_SUCCESS
        except Exception as exc:  # a file we cannot hold: refuse it, keep serving
            with self._lock:
                self.stats.instances_refused += 1
            log.warning("refused an instance: %s: %s", type(exc).__name__, exc)
            return STATUS_CANNOT_UNDERSTAND

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
            self.probe.record(
                features=result.features,
                outputs=result.outputs,
                study_uid=study.study_uid,
                acquired_at=result.acquired_at,
                error=result.error,
            )
            with self._lock:
                self.stats.studies_recorded += 1
        except Exception as exc:  # one bad study must not stop the listener
            with self._lock:
                self.stats.studies_failed += 1
            log.warning("study could not be recorded: %s: %s", type(exc).__name__, exc)
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
