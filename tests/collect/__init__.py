"""Tests of kubeforensics collect."""
