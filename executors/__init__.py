"""Executors (local, ansible, kubernetes) behind the Protocol in ``executors/base.py``."""
