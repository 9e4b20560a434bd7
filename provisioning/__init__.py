"""Technician tools: district CA, kit certificates, revocation, broker configuration."""
