"""HTTP routes: one router per resource, kept thin (the work is in phase4.monitor.domain.ingest and
friends)."""
