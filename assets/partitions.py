"""One partition per catalog connection.

It lives beside the assets rather than in pipelines/ because the assets and checks must name it, and imports flow
pipelines -> assets/checks -> resources -> media.
"""

from dagster import DynamicPartitionsDefinition

connections_partitions = DynamicPartitionsDefinition(name="connections")
