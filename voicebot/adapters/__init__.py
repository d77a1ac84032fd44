"""Telephony adapters: each turns a call into two legs of audio frames and carries out the engine's actions."""
