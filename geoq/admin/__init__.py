"""The admin CLI: see and fix queues from a shell."""
