"""The one error type of ``phase4.probes.dicom``: a file or series that cannot be used, and why.

Every unusable file or series yields a :class:`DicomFeatureError` naming the file, the DICOM
attribute (its PS3.6 keyword) and the reason, never a bare pydicom or numpy exception. It
subclasses ``ValueError`` so callers that already handle bad input keep working.
"""

from __future__ import annotations

from pathlib import Path


class DicomFeatureError(ValueError):
    """A DICOM file or series whose features cannot be extracted (or one quantity of it).

    ``str()`` reads ``"file.dcm: RadionuclideTotalDose: missing, so SUV cannot be computed"``;
    the path part is the file name only (folders can carry patient names); the attribute part is
    omitted when the problem is not one attribute's, or when the reason already names it
    (``"CT_small.dcm: not a PET or NM image: Modality CT"``).
    """

    def __init__(
        self, reason: str, *, path: str | Path | None = None, attribute: str | None = None
    ) -> None:
        self.path: str | None = None if path is None else str(path)
        self.attribute = attribute
        self.reason = reason
        super().__init__(self._message())

    def _message(self) -> str:
        parts = []
        if self.path is not None:
            parts.append(Path(self.path).name or self.path)
        if self.attribute and self.attribute not in self.reason:
            parts.append(self.attribute)
        parts.append(self.reason)
        return ": ".join(parts)

    def with_path(self, path: str | Path) -> DicomFeatureError:
        """The same error attributed to ``path`` (for errors raised below the file level)."""
        return DicomFeatureError(self.reason, path=path, attribute=self.attribute)

    def __reduce__(self) -> tuple[object, ...]:
        # Keyword-only arguments: teach pickle (and multiprocessing) to rebuild the error.
        return (_rebuild, (self.reason, self.path, self.attribute))


def _rebuild(reason: str, path: str | None, attribute: str | None) -> DicomFeatureError:
    return DicomFeatureError(reason, path=path, attribute=attribute)
