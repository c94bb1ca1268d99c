"""The performance chart draws the validated baseline the device identity records (the same the
post-market surveillance report compares against) when the monitoring configuration states none."""

from __future__ import annotations

from sqlmodel import Session

from phase4.monitor.domain.device_identity import set_device_identity
from phase4.monitor.store.models import Deployment
from phase4.monitor.ui.timeseries import identity_baseline
from tests.conftest import Fixture


def test_the_identity_baseline_is_the_charts_baseline(world: Fixture) -> None:
    with Session(world.engine) as session:
        deployment = session.get(Deployment, world.deployment_a)
        assert deployment is not None
        assert identity_baseline(session, deployment) == {}
        set_device_identity(
            session,
            world.deployment_a,
            {
                "validated_baseline": {
                    "sensitivity": {"value": 0.89, "n": 412},
                    "ppv": {"value": 0.86, "n": 300},
                    "source": "CER-12 v3, sect. 6.2",
                }
            },
            actor="dr-curie",
        )
        session.commit()
        assert identity_baseline(session, deployment) == {"sensitivity": 0.89, "ppv": 0.86}
