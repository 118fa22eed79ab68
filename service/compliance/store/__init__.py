"""The only code that knows Redis key names: statuses, dead letters, breakers and indexes."""
