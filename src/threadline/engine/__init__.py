"""The engine: commands onto the log, delivery from it."""
