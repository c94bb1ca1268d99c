"""A pynetdicom storage SCU for the listener's tests: sends data sets as given (even ones that
dcmtk would refuse to send, such as UIDs that break the grammar) and returns the statuses."""

from __future__ import annotations

import os
import ssl
import time
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import Verification

REFUSED_ASSOCIATION = -1
NO_CONTEXT = -3


def send(
    port: int,
    datasets: Iterable[Dataset],
    *,
    calling_ae: str = "STORESCU",
    syntaxes: list[str] | None = None,
    tls: ssl.SSLContext | None = None,
) -> list[int]:
    """C-STORE each data set on one association; its status, or -1 if the association was
    refused. Each data set's own transfer syntax is proposed unless ``syntaxes`` is given."""
    items = list(datasets)
    ae = AE(ae_title=calling_ae)
    for sop in {str(ds.SOPClassUID) for ds in items}:
        proposed = syntaxes or sorted(
            {str(ds.file_meta.TransferSyntaxUID) for ds in items if str(ds.SOPClassUID) == sop}
        )
        ae.add_requested_context(sop, proposed)
    assoc = ae.associate("127.0.0.1", port, ae_title="PHASE4", tls_args=_tls(tls))
    if not assoc.is_established:
        return [REFUSED_ASSOCIATION] * len(items)
    statuses = []
    try:
        with warnings.catch_warnings():  # invalid UIDs are sent on purpose
            warnings.simplefilter("ignore", UserWarning)
            for ds in items:
                try:
                    status = assoc.send_c_store(ds)
                except ValueError:  # no presentation context accepted for it
                    statuses.append(NO_CONTEXT)
                    continue
                statuses.append(int(status.Status) if "Status" in status else -2)
    finally:
        assoc.release()
    return statuses


def echo(port: int, *, calling_ae: str = "ECHOSCU", tls: ssl.SSLContext | None = None) -> int:
    """C-ECHO status, or -1 if the association was refused."""
    ae = AE(ae_title=calling_ae)
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", port, ae_title="PHASE4", tls_args=_tls(tls))
    if not assoc.is_established:
        return REFUSED_ASSOCIATION
    try:
        status = assoc.send_c_echo()
        return int(status.Status) if "Status" in status else -2
    finally:
        assoc.release()


def _tls(context: ssl.SSLContext | None) -> tuple[ssl.SSLContext, str] | None:
    return None if context is None else (context, "127.0.0.1")


def wait_for(predicate: Callable[[], bool], timeout_s: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def files_under(folder: Path) -> list[Path]:
    """Every regular file left under ``folder`` (anything of a study is a leak).

    The listener may be removing a study's folder while this looks: ``os.walk`` skips a folder
    that vanished (``Path.rglob`` raised FileNotFoundError on a loaded machine), and a file that
    vanished is not left."""
    found = (Path(root) / name for root, _, names in os.walk(folder) for name in names)
    return [p for p in found if p.is_file()]
