"""Batch jobs behind the CLIs in tools/."""
