"""Getting reminders out: dispatch, the daemon, digests, sinks."""
