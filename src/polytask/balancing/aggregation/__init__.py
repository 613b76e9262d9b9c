"""Gradient-level balancing methods: (T, P) task gradients -> one (P,) direction."""
