"""Handlers that ship with geoq: route to them from YAML."""
