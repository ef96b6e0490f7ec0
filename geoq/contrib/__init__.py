"""Integrations with other libraries, each behind an optional extra; `import geoq` imports none."""
