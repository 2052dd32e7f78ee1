"""The suites, one per mart (plus the instruction tables). Each module defines SUITE: a SuiteSpec."""

from expectations.suites import cohort, events, instructions, notes, outcomes, splits

SUITES = {s.name: s for s in [cohort.SUITE, events.SUITE, notes.SUITE, splits.SUITE, outcomes.SUITE,
                              instructions.SUITE]}
