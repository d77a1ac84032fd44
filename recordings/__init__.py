"""Recording store, QA sampling and screening."""
