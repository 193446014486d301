"""The partitioned software-defined assets of a sync: one partition per catalog connection."""
