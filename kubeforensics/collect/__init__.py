"""Collectors: live Kubernetes API snapshot/watch and Elasticsearch queries, into a case."""
