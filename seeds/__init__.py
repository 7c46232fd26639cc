"""Seed files shipped with the package (the demo municipality)."""
