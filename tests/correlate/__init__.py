"""Tests of kubeforensics correlate."""
