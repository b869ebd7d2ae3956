"""Tests of kubeforensics simulate."""
