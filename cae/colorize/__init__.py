"""colorize."""
