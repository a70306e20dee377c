"""Training recipes (TOML), shipped as package data."""
