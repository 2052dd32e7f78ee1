{{ staging_note('discharge') }}
