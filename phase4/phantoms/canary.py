"""The AI canary: what the deployed AI says about a phantom whose answer is known, against the
truth and against what it said before (RELAINCE, Jha et al. 2022: phantom studies as sanity
checks of a deployed AI).

Shapes (plain JSON, as stored by the monitor):

* ``truth`` — ``{"spheres": [{"diameter_mm": 37, "volume_ml": 26.52, "suv": 9.9,
  "concentration_kbq_ml": 16.5, "center_mm": [x, y, z]}, ...], ...}`` (what
  ``phase4.phantoms.synthetic.nema_iq_truth`` returns; ``suv`` and ``center_mm`` optional).
* ``ai_outputs`` — ``{"lesions": [{"suv_max": 8.1, "volume_ml": 24.0,
  "center_mm": [x, y, z]}, ...]}``; any key but ``lesions`` is ignored, and each lesion's keys
  are optional (a ratio needs its quantity on both sides).

Matching: each sphere takes the nearest unmatched lesion whose centre lies within the sphere's
radius + ``match_tolerance_mm`` (default 10 mm); spheres are matched largest first. If no
lesion and no sphere carries ``center_mm``, lesions are matched to spheres by volume rank.

History: each earlier output is compared with the same truth; for each metric (detected
count, each sphere's volume and SUVmax ratios) z = (now − mean) / SD of the history, with the
SD floored (``min_sd_ratio`` = 0.02 for ratios, 0.5 for the count) so that a deterministic AI
does not alarm on a rounding difference. "changed" when any |z| > ``z_threshold`` (default 3),
or a sphere found in every earlier result is missed now; fewer than ``min_history`` (default
3) earlier results: "unchanged", with the reason that there is no history to compare.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from phase4.phantoms.results import ResultData


@dataclass(frozen=True)
class SphereMatch(ResultData):
    diameter_mm: float
    detected: bool
    distance_mm: float | None
    volume_ratio: float | None  # AI volume / true volume
    suv_max_ratio: float | None  # AI SUVmax / true SUV


@dataclass(frozen=True)
class CanaryComparison(ResultData):
    detected: int
    spheres: int
    false_positives: int
    matches: tuple[SphereMatch, ...]
    z_scores: dict[str, float]
    history_size: int
    verdict: Literal["unchanged", "changed"]
    reasons: tuple[str, ...]

    @property
    def changed(self) -> bool:
        return self.verdict == "changed"

    def metrics(self) -> dict[str, float]:
        """Flat metrics of this result alone (the history's z-scores are in ``z_scores``)."""
        return _metrics(self.matches, self.detected)


def _centre(item: Mapping[str, Any]) -> np.ndarray | None:
    c = item.get("center_mm")
    if c is None:
        return None
    a = np.asarray(c, dtype=float)
    if a.shape != (3,) or not np.all(np.isfinite(a)):
        raise ValueError(f"center_mm must be 3 finite numbers, not {c!r}")
    return a


def _number(item: Mapping[str, Any], key: str) -> float | None:
    v = item.get(key)
    if v is None:
        return None
    x = float(v)
    return x if math.isfinite(x) else None


def _spheres(truth: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    spheres = truth.get("spheres")
    if not isinstance(spheres, list) or not spheres:
        raise ValueError("truth must hold a non-empty list 'spheres'")
    for s in spheres:
        if not isinstance(s, Mapping) or _number(s, "diameter_mm") is None:
            raise ValueError(f"each truth sphere needs a diameter_mm, got {s!r}")
    return sorted(spheres, key=lambda s: -float(s["diameter_mm"]))


def _lesions(ai_outputs: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    lesions = ai_outputs.get("lesions", [])
    if not isinstance(lesions, list) or not all(isinstance(x, Mapping) for x in lesions):
        raise ValueError("ai_outputs['lesions'] must be a list of objects")
    return lesions


def match_lesions(
    truth: Mapping[str, Any], ai_outputs: Mapping[str, Any], *, match_tolerance_mm: float = 10.0
) -> tuple[tuple[SphereMatch, ...], int]:
    """Per-sphere matches (smallest sphere first) and the number of unmatched lesions."""
    spheres = _spheres(truth)
    lesions = _lesions(ai_outputs)
    used: set[int] = set()
    pairs: dict[int, tuple[int, float | None]] = {}
    by_position = any(_centre(s) is not None for s in spheres) or any(
        _centre(x) is not None for x in lesions
    )
    if by_position:
        for si, s in enumerate(spheres):
            sc = _centre(s)
            if sc is None:
                continue
            reach = float(s["diameter_mm"]) / 2 + match_tolerance_mm
            best: tuple[float, int] | None = None
            for li, lesion in enumerate(lesions):
                lc = _centre(lesion)
                if li in used or lc is None:
                    continue
                d = float(np.linalg.norm(lc - sc))
                if d <= reach and (best is None or d < best[0]):
                    best = (d, li)
            if best is not None:
                used.add(best[1])
                pairs[si] = (best[1], best[0])
    else:
        ranked = sorted(range(len(lesions)), key=lambda i: -(_number(lesions[i], "volume_ml") or 0))
        for si, li in zip(range(len(spheres)), ranked, strict=False):
            used.add(li)
            pairs[si] = (li, None)
    matches = []
    for si, s in enumerate(spheres):
        if si not in pairs:
            matches.append(SphereMatch(float(s["diameter_mm"]), False, None, None, None))
            continue
        li, d = pairs[si]
        lesion = lesions[li]
        vol_true, vol_ai = _number(s, "volume_ml"), _number(lesion, "volume_ml")
        suv_true, suv_ai = _number(s, "suv"), _number(lesion, "suv_max")
        matches.append(
            SphereMatch(
                diameter_mm=float(s["diameter_mm"]),
                detected=True,
                distance_mm=d,
                volume_ratio=vol_ai / vol_true if vol_true and vol_ai is not None else None,
                suv_max_ratio=suv_ai / suv_true if suv_true and suv_ai is not None else None,
            )
        )
    matches.sort(key=lambda m: m.diameter_mm)
    return tuple(matches), len(lesions) - len(used)


def _metrics(matches: Sequence[SphereMatch], detected: int) -> dict[str, float]:
    out: dict[str, float] = {"detected_count": float(detected)}
    for m in matches:
        d = f"{m.diameter_mm:g}mm"
        if m.volume_ratio is not None:
            out[f"volume_ratio_{d}"] = m.volume_ratio
        if m.suv_max_ratio is not None:
            out[f"suv_max_ratio_{d}"] = m.suv_max_ratio
    return out


def compare_canary(
    truth: Mapping[str, Any],
    ai_outputs: Mapping[str, Any],
    history: Sequence[Mapping[str, Any]] = (),
    *,
    z_threshold: float = 3.0,
    min_history: int = 3,
    min_sd_ratio: float = 0.02,
    min_sd_count: float = 0.5,
    match_tolerance_mm: float = 10.0,
) -> CanaryComparison:
    """Compare the AI's output on the phantom with the truth and with its earlier outputs
    (``history``: earlier ``ai_outputs`` on the same phantom, oldest first)."""
    matches, false_positives = match_lesions(
        truth, ai_outputs, match_tolerance_mm=match_tolerance_mm
    )
    detected = sum(m.detected for m in matches)
    now = _metrics(matches, detected)
    past_matches = [
        match_lesions(truth, h, match_tolerance_mm=match_tolerance_mm)[0] for h in history
    ]
    past = [_metrics(pm, sum(m.detected for m in pm)) for pm in past_matches]
    reasons: list[str] = []
    z_scores: dict[str, float] = {}
    if len(past) < min_history:
        reasons.append(
            f"only {len(past)} earlier canary result(s); {min_history} are needed to judge a change"
        )
    else:
        for name, value in now.items():
            series = [p[name] for p in past if name in p]
            if len(series) < min_history:
                continue
            floor = min_sd_count if name == "detected_count" else min_sd_ratio
            mean = float(np.mean(series))
            sd = max(float(np.std(series, ddof=1)), floor)
            z = (value - mean) / sd
            z_scores[name] = z
            if abs(z) > z_threshold:
                reasons.append(
                    f"{_describe(name)} is {value:.3g}, against {mean:.3g} ± {sd:.2g} before "
                    f"(z = {z:+.1f})"
                )
        for m in matches:
            always = all(
                any(pm.diameter_mm == m.diameter_mm and pm.detected for pm in one)
                for one in past_matches
            )
            if not m.detected and always:
                reasons.append(
                    f"the {m.diameter_mm:g} mm sphere was found in all {len(past)} earlier "
                    "results and is missed now"
                )
    changed = len(past) >= min_history and any("z =" in r or "missed" in r for r in reasons)
    if not changed and len(past) >= min_history:
        reasons.append(f"within {z_threshold:g} SD of the last {len(past)} results")
    return CanaryComparison(
        detected=detected,
        spheres=len(matches),
        false_positives=false_positives,
        matches=matches,
        z_scores=z_scores,
        history_size=len(past),
        verdict="changed" if changed else "unchanged",
        reasons=tuple(reasons),
    )


def _describe(name: str) -> str:
    if name == "detected_count":
        return "the number of spheres detected"
    kind, _, size = name.rpartition("_")
    what = {"volume_ratio": "volume / true volume", "suv_max_ratio": "SUVmax / true SUV"}[kind]
    return f"the {size.removesuffix('mm')} mm sphere's {what}"
