"""Loss-level balancing methods."""
