"""Study definitions shipped with the package (TOML)."""
