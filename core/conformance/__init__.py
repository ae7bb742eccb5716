"""Conformance suites: pytest test classes any backend of a service runs against itself."""
