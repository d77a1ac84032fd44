"""The application: adapters, call pipeline, dialog, NLU, TTS, server, CLI and audit."""
