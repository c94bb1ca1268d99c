"""HTTP routes: one router per resource, kept thin (the work is in monitor.ingest and friends)."""
