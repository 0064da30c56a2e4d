"""Where jobs run: the runner interface and its backends."""
