"""Which keys name a patient identifier: the monitor's last line of defence.

The probe already strips these at the edge; the monitor refuses an item that still carries one,
so that a third-party client cannot put a patient name, ID, birth date or accession number into
the store. The vocabulary is the probe's (``phase4.probes.phi``: one list, so a record is never
refused here for a key the probe would have stripped), compared after the same normalisation
(case-folded, letters and digits only: ``PatientName`` = ``patient_name`` = ``patient-name``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from phase4.probes.phi import PHI_KEYS, is_phi_key

__all__ = ["PHI_KEYS", "is_phi_key", "phi_keys_in"]


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
