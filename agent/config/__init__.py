"""Agent configuration: `model` (frozen data) and `load` (flags, files, merge, validation)."""
