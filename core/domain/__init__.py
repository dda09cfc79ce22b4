"""Plain types and pure rules shared by every component; no I/O framework, no clock reads."""
