"""What runs inside a job. Imports nothing from the faces, the queue or the runners."""
