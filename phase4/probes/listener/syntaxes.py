"""Transfer syntaxes the listener accepts: only those whose pixel data it can decode here.

PS3.4 §B.4.1 lets a Storage SCP accept a presentation context only for the transfer syntaxes
it supports; a sender (a PACS such as Orthanc) whose proposed compressed syntax is refused
transcodes to one that is accepted, or falls back to the uncompressed default (Implicit VR
Little Endian, PS3.5 §10.1). Accepting a syntax with no installed decoder instead makes the
C-STORE succeed and the study's pixels unusable. pydicom's decoders (``pydicom.pixels``) say
which syntaxes have a usable plugin in this environment (pillow, pyjpegls, ...).

JPEG Lossless (Process 14) needs gdcm or pylibjpeg-libjpeg, which are not dependencies (the
latter is GPL-3.0): senders transcode it, which Orthanc does on the fly.
"""

from __future__ import annotations

from pydicom.pixels import get_decoder
from pydicom.uid import (
    AllTransferSyntaxes,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

# Native (uncompressed) encodings: nothing to decode (PS3.5 §8.1.1).
NATIVE = (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
)


def decodable_transfer_syntaxes() -> list[str]:
    """Native syntaxes first (preferred), then every compressed one with a usable decoder."""
    accepted = [str(uid) for uid in NATIVE]
    for uid in AllTransferSyntaxes:
        if uid in NATIVE:
            continue
        try:
            available = get_decoder(uid).is_available
        except NotImplementedError:  # no decoder at all in pydicom (video, audio)
            available = False
        if available:
            accepted.append(str(uid))
    return accepted
