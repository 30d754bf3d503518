"""Parallel runtime: process groups, Megatron parallel state, RNG seeding, and the CPU compatibility layer."""
