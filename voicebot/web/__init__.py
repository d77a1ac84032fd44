"""The web side of `voicebot serve`: the supervisor console and the media endpoints."""
