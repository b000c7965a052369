"""Pure core: event schema, conversation state and ports. No I/O here."""
