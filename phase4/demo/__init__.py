"""The end-to-end demo: a simulated clinic, its AI, and the changes phase4 must notice."""
