"""Accounts, sessions, tokens, CSRF and secrets at rest."""
