"""Evaluation: generate on an instruction set's test split, score, and write every prediction and score to the
warehouse (`evaluation.*`), with dbt results marts (`results.*`) and a report over them.

    make evaluate CONFIG=evaluation/specs/demo.yaml        # = python -m evaluation.cli --config ...
    make report                                            # = python -m evaluation.report

Layout (lm-evaluation-harness style): `metrics/` one registered metric per file, `judges/` the LLM judge,
`specs/` evaluation specs (pydantic-validated, versioned), `runner.py` the pipeline, `cli.py` the command.
"""
