"""Tests of kubeforensics."""
