"""Charged-particle tracking with an interaction-network edge classifier (issue 24)."""
