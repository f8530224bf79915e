"""The advisory domain: OSV semantics, matching installed packages, SBOM inventory import."""
