"""The DICOM sidecar listener: receives copies of AI inputs and outputs, records features only."""
