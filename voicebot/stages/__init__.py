"""The stages of a call's pipeline, one job each."""
