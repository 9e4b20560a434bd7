"""The national tier: workers that take every district's accepted results from the replicated NATS JetStream
stream, verify them again (trusting no district) and store them in PostgreSQL partitioned by province, and the
national tally (the district's tally code, one level higher)."""
