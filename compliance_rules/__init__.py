"""Compliance rule engine and its rule packs."""
