"""Correlation: entities at a point in time, process trees, cross-source links, blind spots, story."""
