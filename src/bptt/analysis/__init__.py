"""Checking and looking inside BPTT: finite differences, RTRL, and the Jacobian-by-lag diagnostics."""
