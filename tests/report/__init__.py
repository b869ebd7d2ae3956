"""Tests of kubeforensics report."""
