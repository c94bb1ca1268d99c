"""Radionuclides: half-lives, codes, and the plausibility ranges the flags test against.

Half-lives are evaluated values (NUBASE/ENSDF, LNHB DDEP; F-18 109.77 min). Codes are the
SNOMED-RT and SNOMED CT code values of DICOM PS3.16 CID 4020 (PET Radionuclide) and CID 18
(Radiopharmaceutical Isotope). The plausibility ranges are deliberately wide: they exist to
catch unit and entry errors (MBq typed as Bq, mCi as MBq, a default weight), not to police
protocols. Sources for the typical values they bracket:

* F-18 FDG: EANM procedure guideline v2.0 (Boellaard et al. 2015) — about 2-4 MBq/kg for
  1.5-3 min per bed on conventional scanners, far lower on long axial FOV systems; uptake
  60 min (55-75), delayed imaging up to about 3 h. Range 0.5-15 MBq/kg, 20 min - 4 h.
* Ga-68: EANM Ga-68 DOTA-conjugate guideline (Virgolini et al. 2010) 100-200 MBq, uptake
  45-90 min; EANM/SNMMI PSMA guideline (Fendler et al. 2017) 1.8-2.2 MBq/kg, 50-100 min.
  Range 0.5-6 MBq/kg, 20 min - 3 h.
* C-11 (choline, methionine, acetate): 200-750 MBq, imaging from injection to about 40 min.
  Range 1-15 MBq/kg, 0 - 90 min.
* Tc-99m (SPECT): EANM bone scintigraphy guideline (Van den Wyngaert et al. 2016) 500-700 MBq,
  2-5 h; myocardial perfusion up to about 1100 MBq, 15-60 min. Range 1-25 MBq/kg, 0 - 24 h.
* Zr-89 immuno-PET: 37-74 MBq, imaging on days 1-7. Range 0.2-3 MBq/kg, 12 h - 10 days.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

HALF_LIFE_TOLERANCE = 0.01  # header vs table half-life: flag a disagreement above 1%


@dataclass(frozen=True)
class Nuclide:
    """One radionuclide and the ranges its studies are checked against."""

    name: str  # "F-18"
    half_life_s: float
    codes: frozenset[str]
    activity_mbq_per_kg: tuple[float, float]
    uptake_time_s: tuple[float, float]


NUCLIDES: dict[str, Nuclide] = {
    n.name: n
    for n in (
        Nuclide("F-18", 6586.2, frozenset({"C-111A1", "77004003"}), (0.5, 15.0), (1200, 14400)),
        Nuclide("Ga-68", 4062.6, frozenset({"C-131A3", "35337001"}), (0.5, 6.0), (1200, 10800)),
        Nuclide("C-11", 1221.8, frozenset({"C-105A1", "40565003"}), (1.0, 15.0), (0, 5400)),
        Nuclide("Tc-99m", 21624.1, frozenset({"C-163A8"}), (1.0, 25.0), (0, 86400)),
        Nuclide("Zr-89", 282276.0, frozenset({"C-168A4", "63360001"}), (0.2, 3.0), (43200, 864000)),
    )
}

_BY_CODE = {code: n for n in NUCLIDES.values() for code in n.codes}

# Element names and symbols that appear in radionuclide code meanings and free text.
_ELEMENTS = {
    "fluorine": "F", "gallium": "Ga", "carbon": "C", "technetium": "Tc", "zirconium": "Zr",
    "nitrogen": "N", "oxygen": "O", "rubidium": "Rb", "copper": "Cu", "iodine": "I",
    "indium": "In", "lutetium": "Lu", "yttrium": "Y", "thallium": "Tl", "scandium": "Sc",
    "terbium": "Tb", "xenon": "Xe", "krypton": "Kr", "samarium": "Sm", "radium": "Ra",
    "holmium": "Ho", "rhenium": "Re", "strontium": "Sr", "chromium": "Cr", "cobalt": "Co",
}  # fmt: skip
_SYMBOLS = {symbol.lower(): symbol for symbol in _ELEMENTS.values()}
_MASS_FIRST = re.compile(r"\^?(\d{1,3})(m?)\^?\s*-?\s*([a-z]+)")
_ELEMENT_FIRST = re.compile(r"([a-z]+)\s*-?\s*\^?(\d{1,3})(m?)\^?")


def identify(code_value: str | None, code_meaning: str | None) -> str | None:
    """A normalised nuclide name ("F-18", "Tc-99m") from a RadionuclideCodeSequence item's
    code value (CID 4020/CID 18) or, failing that, its meaning or any free text."""
    if code_value and code_value.strip() in _BY_CODE:
        return _BY_CODE[code_value.strip()].name
    text = (code_meaning or "").lower()
    for pattern, mass_first in ((_MASS_FIRST, True), (_ELEMENT_FIRST, False)):
        for match in pattern.finditer(text):
            if mass_first:
                mass, meta, element = match.groups()
            else:
                element, mass, meta = match.groups()
            symbol = _ELEMENTS.get(element) or _SYMBOLS.get(element)
            if symbol:
                return f"{symbol}-{int(mass)}{meta}"
    return None


def lookup(name: str | None) -> Nuclide | None:
    return NUCLIDES.get(name) if name else None
