"""Great Expectations suites over the ehrforge marts: `python -m expectations.run` (= `make expectations`)."""
