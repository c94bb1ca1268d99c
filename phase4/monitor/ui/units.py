"""The unit of a stream's quantity, for the charts' axes and legends, from the one suffix table
of ``phase4.monitor.core.quantities`` (the same the alerts' sentences use).

Units come from the field's name: the probes and the DICOM listener name a quantity with its
unit as a suffix (``injected_activity_mbq``, ``uptake_time_s``, ``weight_kg``, ``tmtv_ml``), and
SUVs by the word ``suv`` (``liver_suvmean``, ``lesion_suvmax``, ``suv_p90``). The store keeps
no unit of its own for a record's fields, so a name without a known suffix has no unit (its
axis shows the name alone), and neither has a dimensionless one (a coefficient of variation, a
count, a ratio, a score). Yes/no streams and rates are shares, shown in %.
"""

from __future__ import annotations

from phase4.monitor.core.quantities import quantity_of


def field_of(stream: str) -> str:
    """The field's own name: ``features.liver_suvmean[scanner=X]`` → ``liver_suvmean``."""
    return stream.split("[", 1)[0].rsplit(".", 1)[-1]


def unit_of(stream: str) -> str | None:
    """The unit of a numeric stream's quantity, or None when its name does not say.

    >>> unit_of("features.injected_activity_mbq"), unit_of("features.uptake_time_s")
    ('MBq', 's')
    >>> unit_of("features.liver_suvmean[scanner_model=Discovery MI]")
    'SUV'
    >>> unit_of("features.activity_mbq_per_kg"), unit_of("outputs.malignancy_score") is None
    ('MBq/kg', True)
    """
    return quantity_of(stream.split("[", 1)[0]).unit or None


def with_unit(label: str, unit: str | None) -> str:
    """``label (unit)``, or the label alone without a unit."""
    return f"{label} ({unit})" if unit else label


def format_value(value: float, unit: str | None) -> str:
    """A value to three or four significant figures with its unit: ``270.9 MBq``, ``0.11``."""
    text = f"{value:.4g}" if abs(value) >= 1 else f"{value:.3g}"
    if not unit:
        return text
    return f"{text}{unit}" if unit == "%" else f"{text} {unit}"
