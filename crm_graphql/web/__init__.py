"""HTTP plumbing around the GraphQL view: the GraphQL-over-HTTP protocol, abuse limits on
raw requests, request logs and graceful shutdown."""
