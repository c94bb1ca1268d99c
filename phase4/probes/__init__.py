"""phase4 probe: the sidecar that runs inside a deployed model's process.

It captures every inference (features, outputs, latency, exception), pseudonymises the study
identifier at capture, strips PHI keys, commits every capture to a bounded local SQLite spool
within 0.1 s, and ships batches from it to the monitor's HTTP API from a background thread.
It never slows or breaks the model: capture is an in-memory enqueue and nothing raises into
the model's code path::

    from phase4.probes import Probe

    with Probe(url="http://127.0.0.1:8000", token="p4_...", deployment="lesion-ai@site-a",
               site_secret=b"...") as probe:
        with probe.inference(study_uid=uid, features={"injected_activity_mbq": 250.0}) as inf:
            inf.outputs = {"malignancy_score": model(x)}
"""

from phase4.probes.phi import PHI_KEYS
from phase4.probes.probe import Probe
from phase4.probes.pseudonym import SITE_SECRET_ENV, pseudonymise
from phase4.probes.stats import ProbeStats

__all__ = ["PHI_KEYS", "SITE_SECRET_ENV", "Probe", "ProbeStats", "pseudonymise"]
