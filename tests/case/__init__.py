"""Tests of kubeforensics case."""
