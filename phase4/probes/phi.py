"""Feature/output key names that denote protected health information (PHI).

The probe strips any key (at any nesting depth) whose *normalised* name is in ``PHI_KEYS``.
Normalisation casefolds and keeps only letters and digits, so ``PatientName``,
``patient_name``, ``Patient-Name``, ``patient name`` and the DICOM tag ``(0010,0010)`` all
match ``patientname`` / ``00100010``.

Matching is exact on the normalised name, deliberately not a substring test: drift features
such as ``patient_weight_kg``, ``patient_age_y`` or ``patient_sex`` are legitimate (weight
drives injected activity) and must survive, while a substring rule on "patient" would eat them.
A key that is not listed here is sent; callers are still expected to pass only features.
The monitor refuses records carrying any of these keys (``phase4.monitor.core.privacy`` uses this
very
set), so what a third-party client sends is held to the same rule.

Groups (sources: DICOM PS3.15 Annex E basic confidentiality profile, HIPAA identifiers):

* patient identity: name, IDs, other IDs/names, birth name, mother's birth name, MRN,
  national/social-security numbers;
* birth date and time;
* contact: address, telephone, e-mail;
* accession number and study ID (they index the RIS/PACS order for one patient);
* instance UIDs (study/series/SOP): the study UID goes through ``study_uid=`` and is
  pseudonymised; a raw copy smuggled in as a feature would defeat that;
* staff names (referring/performing/reading physician, operator): personal data, not needed
  for drift surveillance.
"""

from __future__ import annotations

from functools import lru_cache


def _words(text: str) -> set[str]:
    """Space-separated names: keeps the long lists below compact and greppable."""
    return set(text.split())


_PATIENT_IDENTITY = _words(
    "patientname patientsname patientid patientsid patientidentifier otherpatientids "
    "otherpatientidssequence otherpatientnames patientbirthname patientsbirthname "
    "patientmothersbirthname mothersmaidenname mrn medicalrecordnumber medicalrecordno "
    "ssn socialsecuritynumber nationalid nhsnumber personname fullname firstname lastname "
    "surname givenname familyname name medicalrecordlocator issuerofpatientid"
)
_BIRTH = _words(
    "patientbirthdate patientsbirthdate birthdate dateofbirth dob patientbirthtime "
    "patientsbirthtime birthtime"
)
_CONTACT = _words(
    "patientaddress patientsaddress address streetaddress homeaddress "
    "patienttelephonenumbers patientstelephonenumbers telephonenumber telephonenumbers "
    "telephone phonenumber phone patienttelecominformation email emailaddress "
    "patientemail"
)
_ORDER = _words("accessionnumber accession accessionno studyid")
_UIDS = _words(
    "studyinstanceuid studyuid seriesinstanceuid seriesuid sopinstanceuid "
    "mediastoragesopinstanceuid"
)
_STAFF = _words(
    "referringphysicianname referringphysiciansname performingphysicianname "
    "performingphysiciansname nameofphysiciansreadingstudy physiciansofrecord "
    "requestingphysician operatorsname operatorname"
)
# DICOM tags written as hex (group+element) for the same attributes.
_TAGS = _words(
    "00100010 00100020 00100030 00100032 00101000 00101001 00101005 00101060 00101040 "
    "00102154 00080050 00200010 0020000d 0020000e 00080018 00080090 00081050 00081060 "
    "00081070"
)

PHI_KEYS: frozenset[str] = frozenset(
    _PATIENT_IDENTITY | _BIRTH | _CONTACT | _ORDER | _UIDS | _STAFF | _TAGS
)


@lru_cache(maxsize=4096)
def normalise_key(key: str) -> str:
    """Casefold and keep only letters and digits; cached since keys repeat every record."""
    return "".join(ch for ch in key.casefold() if ch.isalnum())


def is_phi_key(key: str) -> bool:
    """True when ``key`` names PHI per ``PHI_KEYS`` (after ``normalise_key``)."""
    return normalise_key(key) in PHI_KEYS
