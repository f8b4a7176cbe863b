"""Master batch record definitions shipped with the package (TOML)."""
