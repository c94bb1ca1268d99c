"""The phase4 command line and the demo: the composition root wiring probes to the monitor."""
