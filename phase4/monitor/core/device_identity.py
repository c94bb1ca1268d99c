"""A deployment's device identity: what the post-market surveillance report says the device is.

A periodic safety update report (MDR, Regulation (EU) 2017/745, Art. 86) and the EU AI Act's
post-market monitoring (Regulation (EU) 2024/1689, Art. 72) are written about one identified
device against its own plan and its own validated performance. This contract holds what the
store otherwise does not know about the deployed AI:

- identity: manufacturer, device name, Basic UDI-DI (MDR Art. 27 and Annex VI Part C), MDR
  risk class (Annex VIII) and the rule behind it, whether it is a high-risk AI system (AI Act
  Art. 6(1)), the notified body (name and four-digit number, MDR Art. 42) and its certificate;
- intended use (MDR Art. 2(12));
- the post-market surveillance plan it is monitored under (MDR Art. 84 and Annex III;
  AI Act Art. 72(3)): document id and version;
- the validated baseline: sensitivity, specificity and PPV, each a proportion with its n, and
  the validation study they come from (the clinical evaluation, MDR Art. 61), with an optional
  margin the plan tolerates before a shortfall is a finding;
- the local acceptance for clinical use (date, by whom, reference);
- who signs the report (MDR Art. 15's person responsible for regulatory compliance, the site's
  lead).

Every key is optional (the report flags what is missing); a key the contract does not know is
refused with its path, like ``deployment.monitoring``. Stored as JSON in ``device_identity``
(migration 0009), set by ``PUT /v1/deployments/{id}/identity`` and ``phase4 deployment
identity`` (audited), read by the export (docs/EXPORTS.md).
"""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from phase4.monitor.core.limits import check_text
from phase4.monitor.core.problems import problems

MdrClass = Literal["I", "Is", "Im", "Ir", "IIa", "IIb", "III"]
MDR_CLASSES: tuple[str, ...] = ("I", "Is", "Im", "Ir", "IIa", "IIb", "III")
# MDR Art. 86(1): a PSUR at least annually for class IIb and III, every two years for IIa;
# class I devices write a PMS report instead (Art. 85).
PSUR_EVERY_MONTHS: dict[str, int | None] = {
    "I": None,
    "Is": None,
    "Im": None,
    "Ir": None,
    "IIa": 24,
    "IIb": 12,
    "III": 12,
}
# A Basic UDI-DI is issued by GS1, HIBCC, ICCBBA or IFA: letters, digits and a few separators.
UDI_PATTERN = r"^[A-Za-z0-9+*./:_-]{1,120}$"
NB_NUMBER_PATTERN = r"^[0-9]{4}$"
NOT_BLANK_PATTERN = r"\S"


def _storable(value: str) -> str:
    """Text both databases store: no NUL, no lone surrogate."""
    try:
        check_text(value, "")
    except ValueError as exc:
        raise ValueError(str(exc).removeprefix(": ")) from None
    return value


def _matching(pattern: str, message: str) -> Any:
    """A pattern stated in the JSON Schema (so the OpenAPI document says it) and checked here,
    so that a value that misses it is refused in words rather than as the pattern."""
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.search(value):
            raise ValueError(message)
        return value

    return (Field(json_schema_extra={"pattern": pattern}), AfterValidator(check))


Text = Annotated[str, *_matching(NOT_BLANK_PATTERN, "must not be blank"), AfterValidator(_storable)]
Name = Annotated[Text, Field(max_length=200)]
Long = Annotated[Text, Field(max_length=4000)]
Udi = Annotated[
    str,
    *_matching(
        UDI_PATTERN,
        "a Basic UDI-DI is 1-120 letters, digits and + * . / : _ - (no spaces), as the issuing "
        "entity (GS1, HIBCC, ICCBBA, IFA) assigned it",
    ),
    Field(description="As the issuing entity (GS1, HIBCC, ICCBBA, IFA) assigned it."),
]
NbNumber = Annotated[
    str,
    *_matching(NB_NUMBER_PATTERN, "a notified body's identification number is four digits (NANDO)"),
]


class _Strict(BaseModel):
    """Refuses keys it does not know and numbers that are not finite."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)


class NotifiedBody(_Strict):
    name: Name = Field(description="The notified body's name, e.g. 'TÜV SÜD Product Service'.")
    number: NbNumber = Field(description="Its four-digit identification number (NANDO).")
    certificate: Name | None = Field(None, description="The certificate's number, if any.")


class PmsPlan(_Strict):
    document_id: Name = Field(description="The post-market surveillance plan's document id.")
    version: Annotated[Text, Field(max_length=64)] = Field(description="Its version.")
    title: Name | None = None


class Proportion(_Strict):
    """A validated proportion: the value and the number of cases it was measured on."""

    value: float = Field(ge=0, le=1, description="e.g. 0.92 for 92 %.")
    n: int = Field(ge=1, le=10_000_000, description="Cases in the denominator.")

    @property
    def successes(self) -> int:
        return round(self.value * self.n)


class ValidatedBaseline(_Strict):
    """The performance the device was validated at, to compare the field against."""

    sensitivity: Proportion | None = None
    specificity: Proportion | None = None
    ppv: Proportion | None = None
    source: Long = Field(
        description="The validation study: document, section, population, e.g. 'Clinical "
        "evaluation report CER-12 v3, sect. 6.2: 412 studies, 3 centres, 2024'."
    )
    margin: float = Field(
        0.0,
        ge=0,
        le=0.5,
        description="How far below the validated value (absolute, e.g. 0.05 = 5 points) the "
        "PMS plan tolerates the field's 95 % interval before it is a finding.",
    )


class ClinicalAcceptance(_Strict):
    """The site's decision to use the AI clinically (acceptance testing, local validation)."""

    accepted_on: date
    accepted_by: Name = Field(description="Who accepted it (name and role).")
    reference: Name | None = Field(None, description="The acceptance record's reference.")


class Signatory(_Strict):
    name: Name
    role: Name


class DeviceIdentity(_Strict):
    """What ``device_identity.identity`` may hold; every key is optional."""

    manufacturer: Name | None = None
    device_name: Name | None = Field(None, description="Device (trade) name and model.")
    basic_udi_di: Udi | None = Field(None, description="Basic UDI-DI (MDR Art. 27).")
    mdr_class: MdrClass | None = Field(None, description="MDR risk class (Annex VIII).")
    classification_rule: Name | None = Field(None, description="e.g. 'Annex VIII Rule 11'.")
    ai_act_high_risk: bool | None = Field(
        None, description="A high-risk AI system under AI Act Art. 6(1)."
    )
    notified_body: NotifiedBody | None = None
    intended_use: Long | None = None
    pms_plan: PmsPlan | None = None
    validated_baseline: ValidatedBaseline | None = None
    clinical_acceptance: ClinicalAcceptance | None = None
    signatories: list[Signatory] = Field(default_factory=list, max_length=4)

    def stored(self) -> dict[str, Any]:
        """The JSON kept in the store: the keys that were given, as validated."""
        return self.model_dump(mode="json", exclude_none=True, exclude_defaults=False)


class DeviceIdentityError(ValueError):
    """A document that is not a ``DeviceIdentity``; the message names each field
    (``identity.notified_body.number: ...``), and ``problems`` lists them."""

    def __init__(self, found: list[str]) -> None:
        more = f"; and {len(found) - 5} more" if len(found) > 5 else ""
        super().__init__("; ".join(found[:5]) + more)
        self.problems = found


def parse_identity(value: Any) -> DeviceIdentity:
    """``value`` (a stored or submitted document; None is {}) as a ``DeviceIdentity``, or
    ``DeviceIdentityError`` naming every problem."""
    if isinstance(value, DeviceIdentity):
        return value
    try:
        return DeviceIdentity.model_validate({} if value is None else value)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        raise DeviceIdentityError(problems(errors, ("identity",))) from None


def merge_identity(base: DeviceIdentity | None, changes: dict[str, Any]) -> DeviceIdentity:
    """``base`` with ``changes`` laid over it, nested objects merged key by key (a value of
    None removes the key); the result is validated."""

    def merged(old: Any, new: Any) -> Any:
        if isinstance(old, dict) and isinstance(new, dict):
            out = dict(old)
            for key, value in new.items():
                if value is None:
                    out.pop(key, None)
                else:
                    out[key] = merged(out.get(key), value)
            return out
        return new

    start = base.stored() if base is not None else {}
    return parse_identity(merged(start, changes))
