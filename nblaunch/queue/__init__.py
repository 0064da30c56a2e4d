"""Where jobs wait: the store, queue configuration and job states."""
