"""The demo's revalidation: the vendor ships version 2.2.0 of the lesion AI to one site, which
runs it in shadow beside the accepted 2.1.0 and also scores it on a locked validation set.
Acceptance criteria are declared first; the comparison then finds the new version as
sensitive (slightly more), with the same Dice, a positive-call rate and PPV within their
margins, but **less specific**: it calls about 7 % more negative studies positive, past the
5-point non-inferiority margin. The gate fails on specificity alone and the site's physicist
rejects the version (docs/REVALIDATION.md).

Everything goes through the real probe (shadow outputs) and the real API, as a site would do
it; the statistics are ``phase4.monitor.drift.paired`` (Tango 1998, McNemar 1947, Efron &
Tibshirani's paired bootstrap).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np

from phase4.probes import Probe

CANDIDATE = "2.2.0"
CRITERIA = {
    "sensitivity": 0.05,
    "specificity": 0.05,
    "ppv": 0.15,
    "dice": 0.03,
    "positive_rate_change": 0.10,
}
SHADOW_STUDIES = 800
SHADOW_LABELLED = 0.5
VALIDATION_CASES = 400
PREVALENCE = 0.35
ACCEPTED_SENSITIVITY, ACCEPTED_SPECIFICITY = 0.90, 0.88
# The candidate finds 30% of the lesions the accepted version misses, and calls 8% of the
# negatives the accepted version gets right positive.
FOUND, NEW_FALSE_POSITIVES = 0.30, 0.08
AGE_BANDS, AGE_SHARES = ("18-39", "40-64", "65-79", "80+"), (0.1, 0.4, 0.4, 0.1)


@dataclass(frozen=True)
class RevalidationScenario:
    revalidation_id: int
    deployment: str
    verdict: str
    failed: list[str]
    decision: str
    validation_sha256: str
    page: str

    def summary(self) -> str:
        return (
            f"revalidation {self.revalidation_id} of {self.deployment}: version {CANDIDATE} "
            f"{self.verdict}ed the gate (failed: {', '.join(self.failed) or 'none'}); "
            f"decision: {self.decision}. {self.page}"
        )


def _case(rng: np.random.Generator) -> tuple[int, int, int]:
    """(truth, accepted call, candidate call) of one study."""
    truth = int(rng.random() < PREVALENCE)
    if truth:
        accepted = int(rng.random() < ACCEPTED_SENSITIVITY)
        candidate = accepted or int(rng.random() < FOUND)
    else:
        accepted = int(rng.random() >= ACCEPTED_SPECIFICITY)
        candidate = accepted or int(rng.random() < NEW_FALSE_POSITIVES)
    return truth, accepted, candidate


def _validation_set(path: Path, rng: np.random.Generator) -> Path:
    lines = ["case_id,truth,accepted_call,candidate_call,accepted_dice,candidate_dice"]
    for i in range(VALIDATION_CASES):
        truth, acc, cand = _case(rng)
        dice = float(np.clip(rng.normal(0.82, 0.06), 0, 1))
        cand_dice = float(np.clip(dice + rng.normal(0.004, 0.02), 0, 1))
        lines.append(f"val-{i:04d},{truth},{acc},{cand},{dice:.3f},{cand_dice:.3f}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def run_revalidation_scenario(
    api_url: str,
    *,
    deployment: str,
    probe_token: str,
    reviewer_token: str,
    site_secret: str,
    data_dir: Path,
    seed: int = 0,
    now: datetime | None = None,
) -> RevalidationScenario:
    """Open, declare, collect shadow traffic and a locked validation set, evaluate and decide
    the revalidation of version 2.2.0 at ``deployment``; return what the gate found."""
    rng = np.random.default_rng(seed + 2200)
    now = now or datetime.now(UTC)
    auth = {"Authorization": f"Bearer {reviewer_token}"}
    base = f"{api_url}/v1/deployments/{deployment}/revalidations"
    with httpx.Client(timeout=60) as http:

        def post(path: str, body: object = None) -> dict:  # type: ignore[type-arg]
            r = http.post(f"{base}{path}", json=body, headers=auth)
            r.raise_for_status()
            return dict(r.json())

        reason = "vendor release 2.2.0, installed in shadow mode"
        opened = post("", {"candidate_version": CANDIDATE, "reason": reason})
        one = f"/{opened['id']}"
        post(f"{one}/criteria", CRITERIA)

        # Shadow traffic: the accepted version answers, the candidate reads the same study.
        truths: dict[str, bool] = {}
        probe = Probe(
            url=api_url,
            token=probe_token,
            deployment=deployment,
            site_secret=site_secret,
            spool_path=data_dir / "probe-shadow.spool.sqlite",
        )
        try:
            for i in range(SHADOW_STUDIES):
                truth, acc, cand = _case(rng)
                score = float(np.clip(rng.normal(0.75 if acc else 0.25, 0.1), 0, 1))
                rid = probe.record(
                    # what the site's probe hands over besides the image: the subgroup bands
                    features={
                        "patient_sex": str(rng.choice(["F", "M"])),
                        "patient_age_band": str(rng.choice(AGE_BANDS, p=AGE_SHARES)),
                    },
                    outputs={"positive": bool(acc), "malignancy_score": round(score, 4)},
                    acquired_at=now - timedelta(hours=SHADOW_STUDIES - i),
                    study_uid=f"1.2.826.0.1.3680043.8.498.22{i}",
                    model_version=opened["accepted_version"],
                    shadow_outputs={CANDIDATE: {"positive": bool(cand)}},
                )
                if rid is not None and rng.random() < SHADOW_LABELLED:
                    truths[rid] = bool(truth)
            probe.flush(timeout_s=60)
        finally:
            probe.close()
        feedback = [
            {
                "feedback_id": uuid.uuid4().hex,
                "record_id": rid,
                "ground_truth": {"malignant": truth},
                "given_at": now.isoformat(),
            }
            for rid, truth in truths.items()
        ]
        for start in range(0, len(feedback), 500):
            r = http.post(
                f"{api_url}/v1/feedback",
                json={"feedback": feedback[start : start + 500]},
                headers={"Authorization": f"Bearer {probe_token}"},
            )
            r.raise_for_status()

        csv_path = _validation_set(data_dir / "revalidation-validation-set.csv", rng)
        attached = post(
            f"{one}/validation-set",
            {"csv": csv_path.read_text(encoding="utf-8"), "filename": csv_path.name},
        )
        post(f"{one}/shadow")
        evaluated = post(f"{one}/evaluate")
        failed = [x["criterion"] for x in evaluated["results"]["results"] if x["verdict"] != "pass"]
        decision = "reject" if failed else "accept"
        post(f"{one}/decision", {"decision": decision})
    return RevalidationScenario(
        revalidation_id=int(opened["id"]),
        deployment=deployment,
        verdict=str(evaluated["verdict"]),
        failed=failed,
        decision=decision,
        validation_sha256=str(attached["validation_sha256"]),
        page=f"{api_url}/ui/deployments/{deployment}/revalidations/{opened['id']}",
    )
