"""The trust core: who may sign what, shared by the kit, the district and the technician's tools.

Certificate identity (roles, URI prefixes, kit id and TPS rules, `identity_of`), certificate files and
requests, private keys, the district's TPS list and revocations. It imports nothing of the kit
(`tpskit.edge`, `tpskit.firmware`), the district (`tpskit.district`) or the technician's tools
(`tpskit.provisioning`); they all import it (tests/test_import_directions.py holds it to that).
"""
