"""The kit: capture gate, reader, validation, signing, outbox, transport and the kit daemon."""
