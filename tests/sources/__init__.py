"""Tests of kubeforensics sources."""
