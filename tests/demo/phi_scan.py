"""The scan for patient identifiers in what the demo wrote, and its one-regex-at-a-time reference.

Each identifier gives regexes for every form it could be written in (:func:`identifier_probes`).
Running every regex over every text costs identifiers × texts full searches. The fast scan
(:func:`scan`) runs a regex only on a text that holds the literal its match must contain, and
finds those literals by looking them up among the text's tokens, so its cost is one pass over
each text plus one regex search per candidate. It returns exactly what :func:`scan_each_regex`
returns (same pairs, same order), because the prefilter never rejects a text a regex matches:

* ``(?<![0-9A-Za-z])FORM(?![0-9A-Za-z])`` (case-sensitive): a match is FORM itself, and every
  maximal run of ASCII letters and digits inside FORM is bounded in the text either by FORM's
  own other characters or by the lookarounds, so it is a maximal run of the text too. The key
  is FORM's longest such run, looked up among the text's runs. A FORM without one is searched
  for as a substring.
* ``\\bGIVEN\\s+FAMILY\\b`` and ``\\bFAMILY\\b`` (``re.IGNORECASE``): a match holds FAMILY, up to
  case, between word boundaries. When FAMILY is all word characters that text is a maximal
  ``\\w+`` run of the text; the key is FAMILY folded, looked up among the text's folded runs.
  Otherwise FAMILY folded is searched for as a substring of the folded text. A FAMILY that is
  not ASCII has no prefilter (its regex always runs).

Folding: ``re.IGNORECASE`` matches an ASCII letter with its other case and with four non-ASCII
characters (U+0130 İ, U+0131 ı, U+017F ſ, U+212A Kelvin sign); ``str.lower`` alone maps only
the Kelvin sign to ASCII and turns U+0130 into two characters. :func:`fold` maps those four
first, so it keeps lengths and sends every character the regex would match to the key's own
character (tests/demo/test_phi_scan.py derives the four from ``re`` itself).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Literal

ALNUM_RUN = re.compile(r"[0-9A-Za-z]+")
WORD_RUN = re.compile(r"\w+")
# The non-ASCII characters re.IGNORECASE matches to an ASCII letter, sent to that letter.
IGNORECASE_EXTRAS = {"\u0130": "i", "\u0131": "i", "\u017f": "s", "\u212a": "k"}
_FOLD = str.maketrans(IGNORECASE_EXTRAS)

Lookup = Literal["alnum_run", "word_run", "substring", "folded_substring", "always"]


def fold(text: str) -> str:
    """Lower case, with the characters re.IGNORECASE adds sent to their ASCII letter first."""
    return text.translate(_FOLD).lower()


@dataclass(frozen=True)
class Probe:
    """One regex and the literal any text it matches must hold (``key``, found by ``lookup``).
    The regex is compiled on first use: most are never needed."""

    pattern: str
    flags: int
    key: str
    lookup: Lookup

    @property
    def regex(self) -> re.Pattern[str]:
        return re.compile(self.pattern, self.flags)


def _exact(form: str) -> Probe:
    pattern = rf"(?<![0-9A-Za-z]){re.escape(form)}(?![0-9A-Za-z])"
    runs = ALNUM_RUN.findall(form)
    if runs:
        return Probe(pattern, 0, max(runs, key=len), "alnum_run")
    return Probe(pattern, 0, form, "substring")


def _named(pattern: str, family: str) -> Probe:
    if not family.isascii():
        return Probe(pattern, re.I, family, "always")
    if WORD_RUN.fullmatch(family):
        return Probe(pattern, re.I, fold(family), "word_run")
    return Probe(pattern, re.I, fold(family), "folded_substring")


def identifier_probes(values: Iterable[str]) -> list[Probe]:
    """Each identifier as it could be written: as is, and a DICOM date also in ISO form; digits
    are matched only as whole numbers (a birth date's 8 digits can hide inside a long float)."""
    probes = []
    for v in sorted(values):
        forms = {v}
        if re.fullmatch(r"\d{8}", v):
            forms.add(date(int(v[:4]), int(v[4:6]), int(v[6:])).isoformat())
        for form in forms:
            probes.append(_exact(form))
        if "^" in v:  # a person name: also as "Given Family" and family name alone
            family, given = v.split("^", 1)
            probes.append(_named(rf"\b{re.escape(given)}\s+{re.escape(family)}\b", family))
            probes.append(_named(rf"\b{re.escape(family)}\b", family))
    return probes


def scan_each_regex(
    texts: Mapping[str, str], patterns: Iterable[re.Pattern[str]]
) -> list[tuple[str, str]]:
    """The reference: (text name, pattern) for every regex that matches, searching each text
    with each regex."""
    patterns = list(patterns)
    return [(where, p.pattern) for where, text in texts.items() for p in patterns if p.search(text)]


def scan(texts: Mapping[str, str], probes: list[Probe]) -> list[tuple[str, str]]:
    """What :func:`scan_each_regex` returns for the probes' regexes, searching a text only with
    the regexes whose key it holds."""
    by_key: dict[Lookup, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for i, probe in enumerate(probes):
        by_key[probe.lookup][probe.key].append(i)
    found = []
    for where, text in texts.items():
        candidates = [i for ids in by_key["always"].values() for i in ids]
        alnum = by_key["alnum_run"].keys() & set(ALNUM_RUN.findall(text))
        words = by_key["word_run"].keys() & {fold(w) for w in WORD_RUN.findall(text)}
        candidates += [i for key in alnum for i in by_key["alnum_run"][key]]
        candidates += [i for key in words for i in by_key["word_run"][key]]
        candidates += [i for key, ids in by_key["substring"].items() if key in text for i in ids]
        if by_key["folded_substring"]:
            folded = fold(text)
            candidates += [
                i for key, ids in by_key["folded_substring"].items() if key in folded for i in ids
            ]
        for i in sorted(set(candidates)):
            if probes[i].regex.search(text):
                found.append((where, probes[i].pattern))
    return found


def identifiers_found(texts: Mapping[str, str], values: Iterable[str]) -> list[tuple[str, str]]:
    """(text name, pattern) for every form of every identifier found in the texts."""
    return scan(texts, identifier_probes(values))
