"""Tests of kubeforensics detect."""
