"""Bus backends: in-process by default, NATS JetStream at scale."""
