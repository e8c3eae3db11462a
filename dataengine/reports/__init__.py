"""Reports on a store: what it holds, what it misses, whether it is whole, its versions, and the repairs the CLI calls."""
