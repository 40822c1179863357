"""Pure functions from a source's raw records to the receivables model's records."""
