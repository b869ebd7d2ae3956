"""Tests of kubeforensics widgets."""
