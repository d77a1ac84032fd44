"""Dialog scripts for the reminder bot."""
