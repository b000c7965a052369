"""Channel adapters: each turns its channel's traffic into canonical events."""
