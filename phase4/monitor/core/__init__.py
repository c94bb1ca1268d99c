"""The monitor's contracts, free of SQL and HTTP: settings, limits on stored values, roles, the
stored words of alerts and phantom verdicts, a deployment's monitoring configuration, how a
validation problem is named, the patient-identifier vocabulary and the domain's refusal
error."""
