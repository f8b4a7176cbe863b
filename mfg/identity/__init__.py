"""Users, roles, sessions and electronic signatures (21 CFR Part 11)."""
