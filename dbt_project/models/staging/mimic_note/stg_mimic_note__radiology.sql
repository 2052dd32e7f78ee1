{{ staging_note('radiology') }}
