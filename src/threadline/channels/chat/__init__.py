"""The chat channel: a WebSocket protocol, the adapter behind it, and a Python client."""
