"""The surveillance passes over the store: drift detection, phantom QC and the AI canary,
evidently reports for alerts, and replay of a CSV through the drift engine."""
