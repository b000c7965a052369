"""Web front ends served by the API: the chat widget, the agent desk, the associate app."""
