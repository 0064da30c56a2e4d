"""What moves jobs: the agent loop, its lock and wake-up channel, and its start."""
