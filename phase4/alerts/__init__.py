"""Notifications and regulatory exports (issue 6)."""
