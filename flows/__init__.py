"""Flows: the compile-for-a-target pipeline as library data (below explore/, above backends/)."""
