"""Master batch record definitions shipped with the package (TOML).

``CURRENT`` names the files of the versions in use; ``mfg init`` registers each as a draft for QA to approve
when its version is new to the database. Earlier versions (``*_v1.toml``) are kept for the record and for
the tests that show a batch keeps the version it began on.
"""

CURRENT = ("aamsc", "aamsc_dose")
