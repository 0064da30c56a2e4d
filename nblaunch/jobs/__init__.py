"""What a job is: its spec, its bundle, and the environment it was captured from."""
