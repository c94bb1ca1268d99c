"""Saved states of the old shape load through one upgrade, and change no alarm.

``data/state_v1.json`` was written by the code of commit ab3f420 (``data/make_state_v1.py``):
a deployment's state before ``STATE_VERSION``, with streams in every state a stream can be saved
in, the records that followed, the alarms that code raised on them and its detectors at the end.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from phase4.monitor.drift.budget import BudgetShare
from phase4.monitor.drift.detectors import WindowedKS
from phase4.monitor.drift.reference import NumericReference
from phase4.monitor.drift.state import (
    STATE_VERSION,
    StateVersionError,
    StreamState,
    upgrade_state,
)
from phase4.monitor.drift.streams import DETECTOR_WEIGHTS, DeploymentMonitor

FIXTURE = json.loads((Path(__file__).parent / "data" / "state_v1.json").read_text())


def _old_state() -> dict[str, Any]:
    return copy.deepcopy(FIXTURE["state"])


def _run(saved: dict[str, Any]) -> tuple[list[dict[str, Any]], DeploymentMonitor]:
    monitor = DeploymentMonitor.from_dict(saved)
    alarms = []
    for i, rec in enumerate(FIXTURE["records"], start=FIXTURE["first_row"]):
        for a in monitor.observe(rec, f"2026-01-03T00:00:{i:05d}", row=i):
            alarms.append(
                {
                    "stream": a.stream,
                    "detector": a.alarm.detector,
                    "kind": a.alarm.kind,
                    "index": a.alarm.index,
                    "change_index_estimate": a.alarm.change_index_estimate,
                    "statistic": a.alarm.statistic,
                    "threshold": a.alarm.threshold,
                    "direction": a.alarm.direction,
                }
            )
    return alarms, monitor


def _assert_same_alarms(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> None:
    assert [(a["stream"], a["detector"], a["index"]) for a in got] == [
        (a["stream"], a["detector"], a["index"]) for a in want
    ]
    for g, w in zip(got, want, strict=True):
        assert g["kind"] == w["kind"] and g["direction"] == w["direction"]
        assert g["change_index_estimate"] == w["change_index_estimate"]
        assert g["statistic"] == pytest.approx(w["statistic"], rel=1e-12)
        assert g["threshold"] == pytest.approx(w["threshold"], rel=1e-12)


def test_an_old_state_gives_the_alarms_the_old_code_gave() -> None:
    assert "state_version" not in FIXTURE["state"]
    assert len(FIXTURE["alarms"]) > 20
    alarms, monitor = _run(_old_state())
    _assert_same_alarms(alarms, FIXTURE["alarms"])
    # and every detector ends where the old code's did (renamed fields aside)
    final = upgrade_state(
        {
            **_old_state(),
            "streams": {
                name: {**s, "detectors": FIXTURE["final_detectors"][name]}
                for name, s in _old_state()["streams"].items()
            },
        }
    )
    for name, stream in monitor.streams.items():
        if final["streams"][name]["state"] != StreamState.MONITORING.value:
            # calibrated during the replay, by this version's design (a fourth detector,
            # spread, and the weights that make room for it): nothing of the old code's to match
            assert stream.detectors.keys() <= {
                *DETECTOR_WEIGHTS["numeric"],
                "new_category",
                "chi_square",
                "bernoulli_cusum",
            }
            continue
        for det_name, det in stream.detectors.items():
            want = final["streams"][name]["detectors"][det_name]
            got = det.to_dict()
            for key in set(want) - {"last_d", "last_g", "last_dof"}:
                if isinstance(want[key], float):
                    assert got[key] == pytest.approx(want[key], rel=1e-12), (name, det_name, key)
                else:
                    assert got[key] == want[key], (name, det_name, key)


def test_the_upgrade_names_each_streams_state_and_reshapes_what_was_renamed() -> None:
    old = _old_state()
    new = upgrade_state(old)
    assert old == FIXTURE["state"]  # the saved document itself is not changed
    assert new["state_version"] == STATE_VERSION
    states = {name: StreamState(s["state"]) for name, s in new["streams"].items()}
    assert states == {
        "features.suv": StreamState.MONITORING,
        "features.tmtv": StreamState.MONITORING,
        "features.lesions": StreamState.MONITORING,
        "features.const": StreamState.RECOLLECTING,
        "features.small[lesions=0.0]": StreamState.COLLECTING_LARGER,
        "features.broken": StreamState.QUARANTINED,
        "error": StreamState.MONITORING,
        "flaky": StreamState.ABANDONED,
        "scanner": StreamState.MONITORING,
    }
    assert "abandoned" not in new["streams"]["flaky"]["budget"]
    assert "Gave up" in new["streams"]["flaky"]["budget"]["not_calibratable"]
    ewma = new["streams"]["features.suv"]["detectors"]["ewma"]
    assert "limit" not in ewma
    assert ewma["multiplier_l"] == old["streams"]["features.suv"]["detectors"]["ewma"]["limit"]
    # the continuous part's median was the transform's centre: it is now called so; for a
    # feature with a point mass the sample's median was not kept, and says so
    old_tmtv = old["streams"]["features.tmtv"]["reference"]
    tmtv = NumericReference.from_dict(new["streams"]["features.tmtv"]["reference"])
    assert tmtv.atoms == [0.0] and tmtv.location == old_tmtv["median"] > 0
    assert tmtv.median is None and "not recorded" in tmtv.describe()
    suv = NumericReference.from_dict(new["streams"]["features.suv"]["reference"])
    assert suv.median == suv.location == old["streams"]["features.suv"]["reference"]["median"]
    assert suv.knot_z == old["streams"]["features.suv"]["reference"]["probs"]
    lesions = NumericReference.from_dict(new["streams"]["features.lesions"]["reference"])
    assert lesions.discrete and lesions.levels == [float(v) for v in range(len(lesions.levels))]
    cbpe = new["cbpe"]
    assert set(cbpe["charts"]) == {"sensitivity", "specificity"}
    assert cbpe["charts"]["sensitivity"]["z_limit"] == old["cbpe"]["z_limit"]
    assert upgrade_state(new) == new  # the current version is left as it is


def test_shapes_older_than_version_1s_writer_upgrade_as_version_1_read_them() -> None:
    """Version 1's reader still accepted earlier pre-release shapes: a KS test without its
    critical value, a budget saved before weights, a reference with explicit knots, and
    documents without the keys added later. They upgrade to the same alarms."""
    old = _old_state()
    for key in ("feedback", "cbpe_pairs", "cbpe", "cbpe_window_at", "cbpe_quarantine"):
        if key != "cbpe":
            del old[key]
    for stream in old["streams"].values():
        del stream["unusable"]
    quarantined = old["streams"]["features.broken"]
    del old["streams"]["features.suv"]["detectors"]["ks"]["critical_d"]
    budget = old["streams"]["features.suv"]["budget"]
    old["streams"]["features.suv"]["budget"] = {
        "detectors_sharing": budget["streams_sharing"],
        "false_alarms_per_year": budget["false_alarms_per_year"],
        "observations_per_day": budget["observations_per_day"],
        "arl0": budget["arl0"],
    }
    ref = old["streams"]["features.suv"]["reference"]
    first, last = ref.pop("knot_range")
    ref["xs"] = np.linspace(first, last, len(ref["probs"])).tolist()
    assert quarantined["quarantine"] is not None
    new = upgrade_state(old)
    ks = new["streams"]["features.suv"]["detectors"]["ks"]
    assert ks["critical_d"] == pytest.approx(
        FIXTURE["state"]["streams"]["features.suv"]["detectors"]["ks"]["critical_d"]
    )
    share = BudgetShare.from_numbers(new["streams"]["features.suv"]["budget"])
    assert share.arl0 == budget["arl0"] and share.weight == 1.0
    assert new["feedback"] == 0 and new["streams"]["error"]["unusable"] == 0
    alarms, _ = _run(old)
    # the suv stream's evidence changes (its budget), its alarms do not; the scores through
    # explicit knots agree with the evenly spaced ones to rounding
    _assert_same_alarms(alarms, FIXTURE["alarms"])


def test_ks_state_saved_before_critical_values_were_stored_still_restores() -> None:
    """A state from an older version has no critical_d: it must be recomputed, not taken as 0
    (which would alarm on every window)."""
    fresh = WindowedKS.calibrated(arl0=20_000, reference_size=500, window=50)
    old = fresh.to_dict()
    del old["critical_d"], old["last_d"]
    saved = {
        "records": 0,
        "streams": {
            "s": {
                "spec": {"kind": "numeric"},
                "reference": None,
                "budget": None,
                "detectors": {"ks": old},
            }
        },
    }
    restored = WindowedKS.from_dict(upgrade_state(saved)["streams"]["s"]["detectors"]["ks"])
    assert restored.critical_d == pytest.approx(fresh.critical_d)
    g = np.random.default_rng(4)
    alarms = [restored.update(float(u)) for u in g.random(5_000)]
    assert sum(a is not None for a in alarms) <= 1
    with pytest.raises(TypeError):  # a detector never reads an old shape by itself
        WindowedKS.from_dict(old)


def test_a_state_from_a_newer_version_is_refused_in_words() -> None:
    newer = {**upgrade_state(_old_state()), "state_version": STATE_VERSION + 1}
    with pytest.raises(StateVersionError, match="newer phase4"):
        DeploymentMonitor.from_dict(newer)
    with pytest.raises(StateVersionError, match="not a version"):
        upgrade_state({"state_version": "2"})
