"""The replicated state store (pure)."""
