"""Which keys name a patient identifier: the monitor's last line of defence.

The probe already strips these at the edge; the monitor refuses an item that still carries one,
so that a third-party client cannot put a patient name, ID, birth date or accession number into
the store. Keys are compared case-insensitively, ignoring ``_``, ``-``, ``.`` and spaces, so
``PatientName``, ``patient_name`` and ``patient-name`` are one key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

# DICOM keywords of the identifying attributes phase4 promises never to store (PS3.15 Annex E
# names many more; these are the ones that identify a person directly), and common aliases.
PHI_KEYS: frozenset[str] = frozenset(
    {
        "patientname",
        "patientid",
        "patientbirthdate",
        "patientbirthtime",
        "accessionnumber",
        "otherpatientids",
        "otherpatientidssequence",
        "otherpatientnames",
        "patientbirthname",
        "patientmothersbirthname",
        "patientaddress",
        "patienttelephonenumbers",
        "medicalrecordlocator",
        "issuerofpatientid",
        "name",
        "firstname",
        "lastname",
        "surname",
        "birthdate",
        "dateofbirth",
        "dob",
        "mrn",
        "accession",
        "ssn",
        "nhsnumber",
    }
)

_IGNORED = re.compile(r"[\s_.\-]")


def normalise_key(key: str) -> str:
    return _IGNORED.sub("", key).lower()


@lru_cache(maxsize=8192)  # the same few dozen feature names arrive in every record
def is_phi_key(key: str) -> bool:
    return normalise_key(key) in PHI_KEYS


def phi_keys_in(value: Any) -> set[str]:
    """Every key in a (nested) JSON value that names a patient identifier."""
    found: set[str] = set()
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, Mapping):
            for k, v in item.items():
                if isinstance(k, str) and is_phi_key(k):
                    found.add(k)
                if isinstance(v, Mapping | list):
                    stack.append(v)
        elif isinstance(item, list):
            stack.extend(v for v in item if isinstance(v, Mapping | list))
    return found
