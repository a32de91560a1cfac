"""Aegir: a hosting control plane."""
