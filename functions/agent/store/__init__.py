"""SQL of the agent service, one module per table group. Every query filters by user where a user is known."""
