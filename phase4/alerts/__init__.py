"""Notifications and regulatory exports."""
