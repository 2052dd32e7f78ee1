"""MEDS (Medical Event Data Standard) export of the warehouse: `make export-meds` (docs/meds.md)."""
