"""Isthmus agent: Python glue on uvloop around the `_core` codecs and state machines."""
