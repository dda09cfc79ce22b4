"""``GET /v2/recommendation``: hardware rows that hold a Hub model."""
