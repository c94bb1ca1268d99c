"""The monitor's contracts, free of SQL and HTTP: settings, limits on stored values, roles,
phantom verdicts, the patient-identifier vocabulary and the domain's refusal error."""
