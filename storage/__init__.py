"""Persistence for patchwarden: ORM models, queries per aggregate, the audit chain, migrations."""
