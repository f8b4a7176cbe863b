"""Label data structures (ISBT 128) and label rendering helpers."""
