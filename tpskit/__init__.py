"""tpskit: polling-station result kits (kit, technician and district roles).

The core package holds what every role shares: form templates, configuration models, the signed
result envelope and the command line. The role folders install beneath it (see pyproject.toml).
"""

__version__ = "0.1.0"
