"""From raw media files to the feature store the ESVA model trains on (``esva extract``)."""
