"""Tests of kubeforensics hardening."""
