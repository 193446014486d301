"""Asset checks: every format violation surfaced in the UI and written into the index, and the delete-safety gate."""

import warnings

from dagster import PreviewWarning

# Partitioned asset checks are a Dagster preview feature that this code location relies on by design (one check result
# per connection); the warning would otherwise greet every CLI run and every test.
warnings.filterwarnings("ignore", category=PreviewWarning, message=".*partitions_def on an AssetCheckSpec.*")
