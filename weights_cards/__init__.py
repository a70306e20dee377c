"""Model cards of the published weights entries (shipped as package data)."""
