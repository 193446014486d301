"""Definitions, jobs, sensors, schedules and the `bucket-sync` command line."""
