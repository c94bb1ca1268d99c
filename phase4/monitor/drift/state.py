"""Saved detector state: its version, what a stream is doing, and the one upgrade of older states.

The store keeps each deployment's ``DeploymentMonitor.to_dict()`` as one JSON document. Its shape
is versioned: ``STATE_VERSION``, saved under ``"state_version"``. ``DeploymentMonitor.from_dict``
(and every reader of a saved document: /metrics, the web UI) passes it through
:func:`upgrade_state` first, and the ``from_dict`` of each part reads the current version only:
every compatibility rule for older documents lives here, applied once, in order.

Version 1: every document without ``"state_version"``, i.e. written by phase4 up to commit
ab3f420, including the shapes of earlier pre-release versions that version still read. Version 2
differs in:

- each stream's ``"state"``: one of :class:`StreamState`'s values (version 1 encoded it by which
  keys the stream's ``budget`` held, and by ``quarantine`` and ``reference``); the budget no
  longer holds ``"abandoned"``, and a budget saved before per-detector weights
  (``"detectors_sharing"``: equal shares, ``arl0`` each) is rewritten as the share it was read as;
- a numeric reference's ``median`` and ``mad_sigma`` are the whole sample's, for people; the
  transform's centre is ``location``. Version 1 kept the continuous part's median (the centre)
  under ``median``: it moves to ``location``, and for a feature with a point mass, whose sample
  median was not kept, ``median`` and ``mad_sigma`` become None (not recorded). ``xs``/``probs``
  become ``levels``/``cdf`` (discrete) or ``knot_x``/``knot_z`` (continuous; ``knot_x`` stays
  empty unless the reference predates evenly spaced knots and has no ``knot_range``);
- the EWMA's limit multiplier is ``multiplier_l`` (was ``limit``);
- the windowed KS test always holds ``critical_d`` (a pre-release state without it gets it
  recomputed from ``alpha`` and the effective size, as version 1's reader did), keeps the last
  window's distance, ``last_d``, and saves its window's values (rounded to 5 decimals when
  taken) as integers in units of 10⁻⁵; the G-test keeps ``last_g`` and ``last_dof`` (None: no
  window judged since the upgrade);
- the new-category notice counts the reference's categories among those it has seen
  (``reference_categories``: the first of ``seen``, as it was built), so that a replay knows
  which values it has yet to announce;
- the label-free performance estimator keeps its two charts (``charts``: mean, SD and limit per
  metric) and ``labelled_pairs`` instead of ``reference`` and ``z_limit``;
- keys that version 1 might lack (saved before they existed) are present: a stream's
  ``unusable`` and ``quarantine``; the monitor's ``feedback`` and ``cbpe*``. (A numeric
  reference leaves out the fields its kind does not use: their defaults.)

Version 3 differs from 2 in what a document may hold, not in the shape of what it held: a
numeric stream whose reference completed under version 3 has a fourth detector, ``spread``
(``detectors.spread.SpreadCusum``), and its budget's weights name it. A version-2 stream keeps
the three detectors and the weights it was calibrated with until its reference is reset or
uploaded (its thresholds were solved for those weights; re-splitting its rate would need a
new calibration, which is what a new reference gives it), so the upgrade only stamps the
version. The version exists so that an older phase4 refuses, in words, a document holding a
detector it does not know, instead of failing on it. Likewise a numeric reference fitted under
version 3 may hold ``grid`` (values recorded on a grid, jittered within it); one saved before
has none, and keeps scoring as it did.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from phase4.monitor.drift.detectors.ks import (
    BUFFER_UNITS,
    ks_critical_distance,
    ks_effective_size,
)

STATE_VERSION = 3


class StateVersionError(ValueError):
    """A saved state this version of phase4 cannot read (written by a newer one, or malformed)."""


class StreamState(StrEnum):
    """What a stream is doing. Its ``budget`` holds the details (the share's arithmetic while
    monitoring; the reason and the numbers when calibration failed or a reference was unusable),
    its ``quarantine`` the reason it stopped."""

    # collecting its first reference
    COLLECTING = "collecting"
    # its detectors could not be calibrated to its budget from the reference it had: collecting
    # one twice as large (budget: "not_calibratable" reason, target and achievable ARL0)
    COLLECTING_LARGER = "collecting_larger"
    # gave up growing its reference (MAX_REFERENCE_GROWTH): not monitored until reset
    ABANDONED = "abandoned"
    # its reference had no variation (a constant feature): collecting a new one
    # (budget: "unusable_reference" reason)
    RECOLLECTING = "recollecting"
    # reference complete; its detectors watch every observation
    MONITORING = "monitoring"
    # an update raised: no observation reaches it until its reference is reset or uploaded
    QUARANTINED = "quarantined"


def upgrade_state(saved: Mapping[str, Any]) -> dict[str, Any]:
    """``saved`` (a ``DeploymentMonitor.to_dict()`` of any version) in the current version's
    shape. A current document is returned as it is; an older one is copied, never changed."""
    version = saved.get("state_version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise StateVersionError(f"the saved state's version is not a version: {version!r}")
    if version > STATE_VERSION:
        raise StateVersionError(
            f"the saved state was written by a newer phase4 (state version {version}); this "
            f"one reads versions up to {STATE_VERSION}"
        )
    if version == STATE_VERSION:
        return dict(saved)
    state = copy.deepcopy(dict(saved))
    if version == 1:
        state = _version_1_to_2(state)
    if state["state_version"] == 2:
        state["state_version"] = 3  # nothing to reshape: see the module's docstring
    return state


def _version_1_to_2(state: dict[str, Any]) -> dict[str, Any]:
    for key, default in (
        ("feedback", 0),
        ("cbpe_pairs", []),
        ("cbpe", None),
        ("cbpe_window_at", None),
        ("cbpe_quarantine", None),
    ):
        state.setdefault(key, default)
    if state["cbpe"] is not None:
        state["cbpe"] = _cbpe_1_to_2(state["cbpe"])
    state["streams"] = {name: _stream_1_to_2(s) for name, s in state["streams"].items()}
    state["state_version"] = 2
    return state


def _stream_1_to_2(s: dict[str, Any]) -> dict[str, Any]:
    s.setdefault("unusable", 0)
    s.setdefault("quarantine", None)
    budget = s.get("budget")
    s["state"] = _stream_state_1(s, budget).value
    if budget is not None:
        budget.pop("abandoned", None)
        if "detectors_sharing" in budget:  # saved before weights: equal shares, arl0 each
            s["budget"] = {
                "streams_sharing": budget["detectors_sharing"],
                "false_alarms_per_year": budget["false_alarms_per_year"],
                "observations_per_day": budget["observations_per_day"],
                "arl0": budget["arl0"],
            }
    if s.get("reference") is not None and s["spec"].get("kind") == "numeric":
        s["reference"] = _numeric_reference_1_to_2(s["reference"])
    s["detectors"] = {k: _detector_1_to_2(k, d) for k, d in s["detectors"].items()}
    notices = s["detectors"].get("new_category")
    if notices is not None:  # built with the reference's categories first, in ``seen``
        counts = (s.get("reference") or {}).get("counts")
        notices["reference_categories"] = len(counts) if counts else len(notices["seen"])
    return s


def _stream_state_1(s: Mapping[str, Any], budget: Mapping[str, Any] | None) -> StreamState:
    """What a version-1 stream was doing, from the keys it held."""
    if s.get("quarantine") is not None:
        return StreamState.QUARANTINED
    if s.get("reference") is not None:
        return StreamState.MONITORING
    if budget and budget.get("abandoned"):
        return StreamState.ABANDONED
    if budget and "not_calibratable" in budget:
        return StreamState.COLLECTING_LARGER
    if budget and "unusable_reference" in budget:
        return StreamState.RECOLLECTING
    return StreamState.COLLECTING


def _numeric_reference_1_to_2(r: Mapping[str, Any]) -> dict[str, Any]:
    atoms = list(r.get("atoms", []))
    out: dict[str, Any] = {
        "n": r["n"],
        "discrete": r["discrete"],
        "levels": [],
        "cdf": [],
        "knot_z": [],
        "knot_range": list(r.get("knot_range", [])),
        "knot_x": [],
        "location": 0.0,
        "scale": r.get("scale", 1.0),
        "yj_lambda": r.get("yj_lambda", 1.0),
        "atoms": atoms,
        "atom_probs": list(r.get("atom_probs", [])),
    }
    if r["discrete"]:
        out.update(median=r["median"], mad_sigma=r["mad_sigma"], levels=r["xs"], cdf=r["probs"])
        return out
    out["knot_z"] = r["probs"]
    if not out["knot_range"]:  # saved before the knots were evenly spaced: their positions
        out["knot_x"] = r["xs"]
    # version 1's "median" was the continuous part's: the transform's centre
    out["location"] = r["median"]
    if atoms:  # the sample's own median and MAD were not kept
        out.update(median=None, mad_sigma=None)
    else:  # no point mass: the continuous part is the sample
        out.update(median=r["median"], mad_sigma=r["mad_sigma"])
    return out


def _detector_1_to_2(name: str, d: dict[str, Any]) -> dict[str, Any]:
    if name == "ewma" and "limit" in d:
        d["multiplier_l"] = d.pop("limit")
    elif name == "ks":
        if d.get("critical_d", 0.0) <= 0:  # saved before the critical value was kept
            n_eff = ks_effective_size(d["reference_size"], d["window"])
            d["critical_d"] = ks_critical_distance(d["alpha"], n_eff)
        d.setdefault("last_d", None)
        d["buffer"] = [round(u * BUFFER_UNITS) for u in d["buffer"]]
    elif name == "chi_square":
        d.setdefault("last_g", None)
        d.setdefault("last_dof", None)
    return d


def _cbpe_1_to_2(c: dict[str, Any]) -> dict[str, Any]:
    if "charts" in c:
        return c
    reference = c.pop("reference")
    z_limit = c.pop("z_limit")
    c["labelled_pairs"] = int(reference["labelled_pairs"])
    c["charts"] = {
        metric: {
            "metric": metric,
            "mean": reference[f"{metric}_mean"],
            "sd": reference[f"{metric}_sd"],
            "z_limit": z_limit,
            "z": None,
            "n": 0,
        }
        for metric in ("sensitivity", "specificity")
    }
    return c
