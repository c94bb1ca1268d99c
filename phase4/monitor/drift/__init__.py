"""Streaming drift detection: calibrated detectors, reference estimates, the false-alarm budget.

Pure statistics: nothing here knows of HTTP or SQL (monitor.engine feeds it from the store)."""
