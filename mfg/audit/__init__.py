"""Hash-chained, append-only audit trail of every create, change and void of GMP data."""
