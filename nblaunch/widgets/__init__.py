"""The notebook face: job card, queue status, cost estimate, live loss."""
