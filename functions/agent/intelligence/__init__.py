"""Optimization intelligence: the analysis tools over a user's usage records, the agents, and the pipeline."""
