"""Tables bigger than memory: Parquet row groups (or a CSV's Parquet copy) streamed
through a one-pass preprocessing fit, hash splits, Arrow encoding, a shuffle buffer and a
background reader (README "Tables bigger than memory")."""
