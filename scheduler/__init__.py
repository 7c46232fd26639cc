"""scheduler — appointment and slot booking for a municipality's digital town hall."""

__version__ = "0.1.0"
