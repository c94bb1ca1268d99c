"""What a stream measures, in the words and units people read: its display name and its unit.

A stream is named by the field it reads (``features.liver_suvmean``, ``outputs.lesion_count``,
``phantom.cylinder.recovery_ratio``). People read "liver SUVmean" in SUV (g/mL), "injected
activity" in MBq. The name follows the convention of units in field names (``uptake_time_s``):
the unit is the field's last word(s), looked up in :data:`UNIT_SUFFIXES`; the words before it,
with acronyms restored (:data:`ACRONYMS`), are the display name. A few fields phase4 itself
creates have their own names (:data:`KNOWN`). A deployment's monitoring configuration may name
any stream itself (``MonitoringConfig.quantities``: label, unit, and whether its change reads as
a percentage); what it says wins.

Whether a change reads best as a percentage (``relative``): yes for quantities on a ratio scale
(activities, SUVs, times, volumes, counts: "fell 7.4%"); no for quantities already in percent
(a uniformity of 4.1% that rises to 5.3% rose 1.2 percentage points), for scores and
probabilities between 0 and 1, and for quantities with an arbitrary zero (HU), which are stated
in their unit. SI unit symbols as in the SI Brochure (BIPM, 9th edition, 2019); SUV as in the
EANM procedure guidelines for FDG PET/CT (Boellaard et al. 2015, EJNMMI 42:328–354), body-weight
SUV in g/mL.

>>> q = quantity_of("features.liver_suvmean")
>>> q.label, q.unit, q.unit_note, q.relative
('liver SUVmean', 'SUV', 'g/mL', True)
>>> quantity_of("features.injected_activity_mbq").label, quantity_of("injected_activity_mbq").unit
('injected activity', 'MBq')
>>> quantity_of("features.axial_cv_pct").unit, quantity_of("features.axial_cv_pct").relative
('%', False)
>>> quantity_of("outputs.lesion_suvmax").label
'AI lesion SUVmax'
>>> quantity_of("phantom.cylinder.recovery_ratio").label
'cylinder recovery ratio'
>>> quantity_of("features.x_mm", {"features.x_mm": {"label": "slice gap"}}).label
'slice gap'
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any


@dataclass(frozen=True, slots=True)
class Quantity:
    """A stream's display name (lower case unless an acronym; a sentence capitalises it), its
    unit symbol ('' when dimensionless), a note on the unit, and whether a change of it reads
    as a percentage of its reference."""

    label: str
    unit: str = ""
    unit_note: str = ""
    relative: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "unit": self.unit,
            "unit_note": self.unit_note,
            "relative": self.relative,
        }


# The last word(s) of a field name -> (unit symbol, note, relative). Longest suffix first wins.
UNIT_SUFFIXES: dict[str, tuple[str, str, bool]] = {
    "_mbq_per_kg": ("MBq/kg", "", True),
    "_kbq_ml": ("kBq/mL", "", True),
    "_bq_ml": ("Bq/mL", "", True),
    "_gbq": ("GBq", "", True),
    "_mbq": ("MBq", "", True),
    "_kbq": ("kBq", "", True),
    "_mci": ("mCi", "", True),
    "_pct": ("%", "", False),
    "_percent": ("%", "", False),
    "_ms": ("ms", "", True),
    "_s": ("s", "", True),
    "_min": ("min", "", True),
    "_h": ("h", "", True),
    "_days": ("days", "", True),
    "_mm": ("mm", "", True),
    "_cm": ("cm", "", True),
    "_m": ("m", "", True),
    "_ml": ("mL", "", True),
    "_l": ("L", "", True),
    "_kg": ("kg", "", True),
    "_g": ("g", "", True),
    "_mgy": ("mGy", "", True),
    "_msv": ("mSv", "", True),
    "_kev": ("keV", "", True),
    "_kcps": ("kcps", "", True),
    "_cps": ("cps", "", True),
    "_hu": ("HU", "", False),
    "_deg": ("°", "", False),
    # dimensionless: the name keeps the word
    "_cv": ("", "coefficient of variation", True),
    "_ratio": ("", "", True),
    "_count": ("", "", True),
    "_score": ("", "between 0 and 1", False),
}
# Words whose suffix is part of the name, not a unit ("_cv" stays "CV" in "image noise CV").
KEEP_WORD = {"_cv", "_ratio", "_count", "_score"}
SUV = ("SUV", "g/mL")
ACRONYMS = {
    "suv": "SUV",
    "suvmean": "SUVmean",
    "suvmax": "SUVmax",
    "suvpeak": "SUVpeak",
    "sul": "SUL",
    "sulpeak": "SULpeak",
    "mtv": "MTV",
    "tmtv": "TMTV",
    "tlg": "TLG",
    "cv": "CV",
    "fwhm": "FWHM",
    "ct": "CT",
    "pet": "PET",
    "spect": "SPECT",
    "nm": "NM",
    "ai": "AI",
    "bmi": "BMI",
    "nema": "NEMA",
    "iq": "IQ",
    "rc": "RC",
    "earl": "EARL",
    "earl1": "EARL1",
    "earl2": "EARL2",
    "ufov": "UFOV",
    "cfov": "CFOV",
    "iu": "IU",
    "du": "DU",
    "hu": "HU",
    "osem": "OSEM",
    "tof": "TOF",
    "psf": "PSF",
    "sop": "SOP",
    "id": "ID",
}
# Streams phase4 itself creates, or whose field name alone says too little.
KNOWN: dict[str, Quantity] = {
    "latency_s": Quantity("AI latency", "s"),
    "inference_error": Quantity("AI inference-error rate"),
    "error": Quantity("AI error rate"),
    "outputs.positive": Quantity("AI positive-call rate"),
    "performance.missed": Quantity("AI miss rate (among confirmed positives)"),
    "performance.false_positive": Quantity("AI false-positive rate (among confirmed negatives)"),
    "performance.dice": Quantity("Dice of physicians' edits", relative=False),
    "estimated.sensitivity": Quantity("AI sensitivity estimated without labels", relative=False),
    "estimated.specificity": Quantity("AI specificity estimated without labels", relative=False),
    "probe.heartbeat": Quantity("records from the probe"),
}
PHANTOM_KINDS = {"nema-iq": "NEMA IQ phantom", "cylinder": "cylinder", "flood": "flood"}
_SUBGROUP = re.compile(r"^(?P<field>[^\[]*)\[(?P<cond>.*)\]$")


def _words(name: str) -> str:
    words = [w for w in re.split(r"[_\s]+", name) if w]
    return " ".join(ACRONYMS.get(w.lower(), w) for w in words)


def _from_name(name: str) -> Quantity:
    """The quantity a field's own name states (its last dotted part)."""
    lower = name.lower()
    for suffix in sorted(UNIT_SUFFIXES, key=len, reverse=True):
        if lower.endswith(suffix) and len(lower) > len(suffix):
            unit, note, relative = UNIT_SUFFIXES[suffix]
            stem = name if suffix in KEEP_WORD else name[: -len(suffix)]
            if not unit and any(w.startswith(("suv", "sul")) for w in lower.split("_")):
                unit, note = SUV
            return Quantity(_words(stem), unit, note, relative)
    if any(w.startswith(("suv", "sul")) for w in lower.split("_")):
        return Quantity(_words(name), *SUV)
    return Quantity(_words(name))


def quantity_of(stream: str, overrides: Mapping[str, Mapping[str, Any]] | None = None) -> Quantity:
    """The quantity a stream measures. ``overrides``: the deployment's ``quantities`` (stream
    or field -> label, unit, relative); a stream's own entry wins over its field's."""
    match = _SUBGROUP.match(stream)
    field = match.group("field") if match else stream
    quantity = _said(_default(field), (overrides or {}).get(field))
    if match:
        quantity = replace(quantity, label=f"{quantity.label} ({match.group('cond')})")
        quantity = _said(quantity, (overrides or {}).get(stream))
    return quantity


def _said(quantity: Quantity, given: Any) -> Quantity:
    """``quantity`` with what a configuration says of it."""
    if not isinstance(given, Mapping):
        return quantity
    said = {k: given.get(k) for k in ("label", "unit", "unit_note", "relative")}
    return replace(quantity, **{k: v for k, v in said.items() if v is not None})


def _default(field: str) -> Quantity:
    if field in KNOWN:
        return KNOWN[field]
    parts = field.split(".")
    section, last = (parts[0], parts[-1]) if len(parts) > 1 else ("", field)
    if section == "phantom" and len(parts) >= 3:
        kind = PHANTOM_KINDS.get(parts[1], _words(parts[1]))
        q = _from_name(last)
        return replace(q, label=f"{kind} {q.label}")
    if section == "canary":
        kind = PHANTOM_KINDS.get(parts[1], _words(parts[1])) if len(parts) > 1 else "phantom"
        return Quantity(f"AI answer on the {kind}")
    if section == "estimated":
        return Quantity(f"AI {_words(last)} estimated without labels", relative=False)
    if last.startswith("flag_") and len(last) > 5:
        return Quantity(f"share of studies flagged for {_words(last[5:])}")
    q = _from_name(last)
    if section == "outputs":
        return replace(q, label=f"AI {q.label}")
    return q
