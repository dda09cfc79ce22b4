"""Database models and sessions, shared by every component."""
