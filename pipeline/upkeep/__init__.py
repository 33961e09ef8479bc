"""Work that keeps the record straight later: re-drives, replays, retention and erasure."""
