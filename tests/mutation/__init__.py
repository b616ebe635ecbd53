"""Mutation testing of the protections (`make mutate`): see __main__.py and docs/TESTING.md."""
