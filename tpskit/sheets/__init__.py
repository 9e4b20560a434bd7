"""Printable blank forms, filled test sheets and a camera simulation (tests, bench, demo, simulated camera)."""
