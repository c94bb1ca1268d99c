"""The prefiltered identifier scan finds exactly what searching with every regex finds, and a
planted identifier in any form the regexes look for fails the demo's check."""

from __future__ import annotations

import re
from datetime import date

import pytest

from tests.demo.phi_scan import (
    IGNORECASE_EXTRAS,
    fold,
    identifier_probes,
    identifiers_found,
    scan,
    scan_each_regex,
)

MRN, ACC, BIRTH, NAME = "MRN4821937", "ACC55501234", "19630417", "DEVRIES^ANNA"
OTHER_NAME = "NOWAK^LUCA"
ODD = ["O'NEIL^SEAN", "ÅSTRÖM^BO", "VAN DER BERG^JAN", "-+-"]  # not all word characters / ASCII
VALUES = {MRN, ACC, BIRTH, NAME, OTHER_NAME, *ODD, "MRN4821", "ACC5550123"}

# Texts that hold each form the regexes look for, in several cases and surroundings, and
# near misses that must not match; each is scanned on its own and in one long text.
PLANTED = {
    "mrn": f"patient_id={MRN};",
    "mrn-start": f"{MRN} at the start",
    "mrn-end": f"at the end {MRN}",
    "mrn-inside-longer": f"MRN48219370 and x{MRN}",  # digits and letters around: no match
    "mrn-prefix-only": "MRN4821 is another identifier",
    "mrn-lower": MRN.lower(),  # exact forms are case-sensitive: no match
    "acc-json": f'{{"accession": "{ACC}"}}',
    "birth-dicom": f"DOB {BIRTH}.",
    "birth-iso": f"born {date(1963, 4, 17).isoformat()}!",
    "birth-in-float": f"0.{BIRTH}1",  # inside a longer number: no match
    "birth-underscore": f"_{BIRTH}_",  # _ is not a letter or digit: a match
    "name-dicom": f"name {NAME}",
    "name-given-family": "Anna Devries came",
    "name-given-family-newline": "ANNA\n  DEVRIES",
    "name-family-alone": "Mrs devries.",
    "name-family-in-word": "devriesx and xdevries",  # no match: inside a word
    "name-family-underscore": "devries_2",  # _ is a word character: no match
    "name-kelvin": "NOWA\u212a",  # the Kelvin sign matches k under re.IGNORECASE
    "name-long-s": "DEVRIE\u017f",  # long s matches s
    "name-dotless-i": "DEVR\u0131ES and LUC\u0130 ... no",
    "name-dotted-capital-i": "DEVR\u0130ES",
    "odd-apostrophe": "Mr o'neil",
    "odd-non-ascii": "åström",
    "odd-spaces": "van der berg",
    "odd-punctuation": "a -+- b",
    "nothing": "SUVmax 12.3 at 2026-01-02, liver 2.1",
    "empty": "",
}


def reference_patterns(values: set[str]) -> list[re.Pattern[str]]:
    """The demo test's regexes as it built them before the prefilter (copied, not imported)."""
    patterns = []
    for v in sorted(values):
        forms = {v}
        if re.fullmatch(r"\d{8}", v):
            forms.add(date(int(v[:4]), int(v[4:6]), int(v[6:])).isoformat())
        for form in forms:
            patterns.append(re.compile(rf"(?<![0-9A-Za-z]){re.escape(form)}(?![0-9A-Za-z])"))
        if "^" in v:
            family, given = v.split("^", 1)
            patterns.append(re.compile(rf"\b{re.escape(given)}\s+{re.escape(family)}\b", re.I))
            patterns.append(re.compile(rf"\b{re.escape(family)}\b", re.I))
    return patterns


def test_the_probes_are_the_reference_regexes() -> None:
    assert [p.regex for p in identifier_probes(VALUES)] == reference_patterns(VALUES)


def test_fast_scan_finds_exactly_what_each_regex_finds() -> None:
    texts = dict(PLANTED)
    texts["all"] = "\n".join(PLANTED.values())
    expected = scan_each_regex(texts, reference_patterns(VALUES))
    assert scan(texts, identifier_probes(VALUES)) == expected
    hit = {where for where, _ in expected}
    # the planted forms are found, the near misses are not
    assert hit == set(PLANTED) - {
        "mrn-inside-longer",
        "mrn-lower",
        "birth-in-float",
        "name-family-in-word",
        "name-family-underscore",
        "nothing",
        "empty",
    } | {"all"}


def test_fast_scan_agrees_on_random_texts() -> None:
    """Random texts built from pieces of the identifiers, separators and look-alike characters
    (the prefilter must never drop a text a regex matches)."""
    import random

    rng = random.Random(20261205)
    pieces = [
        *VALUES,
        "1963-04-17",
        "anna",
        "Devries",
        "NOWA\u212a",
        "\u0131",
        "\u0130",
        "\u017f",
        "_",
        " ",
        "\n",
        "^",
        "-",
        "x",
        "7",
        "é",
    ]
    texts = {
        str(n): "".join(rng.choice(pieces) for _ in range(rng.randint(0, 12))) for n in range(3000)
    }
    expected = scan_each_regex(texts, reference_patterns(VALUES))
    assert len(expected) > 1000  # the texts do hold identifiers
    assert scan(texts, identifier_probes(VALUES)) == expected


def test_the_fold_covers_every_character_ignorecase_adds_to_an_ascii_letter() -> None:
    everything = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c < 0xE000)
    matched = set(re.findall(r"(?i)[0-9A-Za-z_]", everything))
    assert {c for c in matched if not c.isascii()} == set(IGNORECASE_EXTRAS)
    for c in IGNORECASE_EXTRAS:
        assert len(fold(c)) == 1 and re.fullmatch(re.escape(fold(c)), c, re.I)
    # fold keeps positions: str.lower lengthens U+0130 alone, which fold maps first
    assert [c for c in everything if len(c.lower()) != 1] == ["\u0130"]


def demo_check(texts: dict[str, str], values: set[str]) -> None:
    """The demo test's assertion."""
    assert identifiers_found(texts, values) == []


@pytest.mark.parametrize("where", sorted(set(PLANTED) - {"nothing", "empty", "mrn-lower"}))
def test_a_planted_identifier_fails_the_demo_check(where: str) -> None:
    texts = {"clean": PLANTED["nothing"], "planted": PLANTED[where]}
    found = scan_each_regex(texts, reference_patterns(VALUES))
    if found:
        with pytest.raises(AssertionError):
            demo_check(texts, VALUES)
    else:
        demo_check(texts, VALUES)


def test_clean_texts_pass_the_demo_check() -> None:
    demo_check({"a": PLANTED["nothing"], "b": "", "c": "MRN 4821937 ACC-55501234"}, VALUES)
