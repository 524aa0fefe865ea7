"""Raft: the pure core (core, log, progress, messages) and its driver."""
