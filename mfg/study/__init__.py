"""Study definition, sites and subjects."""
