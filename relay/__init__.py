"""Relay (the dispatch and relay issue): Redis Stream events into the database and websockets."""
