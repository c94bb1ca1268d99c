"""Streaming drift detection: calibrated detectors, reference estimates, the false-alarm budget.

Pure statistics: nothing here knows of HTTP or SQL (``phase4.monitor.surveillance.detection``
feeds it from the store). Detectors: ``detectors`` (one module each, one contract); references
and normal scores: ``reference``; ARL and calibration: ``arl``; the budget: ``budget``; streams
and the deployment engine: ``streams``; saved state and its upgrade: ``state``; performance
without labels: ``cbpe``."""
