"""The Serf layer (pure): members and statuses, Lamport clocks, intents, events, queries."""
