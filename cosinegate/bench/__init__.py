"""Benchmark helpers: latency, power and energy measurement on target boards."""
