"""Where a warehouse table's text comes from: `public` (only openly published text, e.g. PMC-Patients case reports
and notes generated from them) or `mimic` (anything derived from credentialed MIMIC data). The PHI guard
(ehrforge.llm.guard) reads it to decide whether a request may go to an endpoint without a PHI attestation.

    from ehrforge import provenance
    provenance.table_provenance("marts.dim_case_reports")        # 'public'
    provenance.table_provenance("marts.fct_notes")               # 'mimic'
    provenance.of_tables(["marts.dim_case_reports", "marts.fct_notes"])   # 'mimic': one MIMIC source is enough

Derived, never asserted by a caller: a dbt source is public only where its YAML says `meta: {provenance: public}`
(on the source or the table); a model is public only when every `ref()` / `source()` it reads is public, recursively
(read statically from the SQL files, so no build or manifest is needed). Everything else, including a model whose
inputs cannot be read from its SQL (a macro hides them) and an unknown table, is `mimic`: the rule fails closed.
"""

from __future__ import annotations

import functools
import re

from ehrforge.paths import DBT_PROJECT_DIR

PUBLIC = "public"
MIMIC = "mimic"
PROVENANCES = (PUBLIC, MIMIC)

_REF = re.compile(r"""\{\{\s*ref\(\s*['"](\w+)['"]\s*\)\s*\}\}""")
_SOURCE = re.compile(r"""\{\{\s*source\(\s*['"](\w+)['"]\s*,\s*['"](\w+)['"]\s*\)\s*\}\}""")


@functools.lru_cache(maxsize=1)
def _graph() -> tuple[dict[str, str], dict[str, str], dict[str, list[str]], dict[str, str]]:
    """(source key -> provenance, source key -> schema.table, model -> deps, model -> schema.table)."""
    import yaml

    sources: dict[str, str] = {}
    source_tables: dict[str, str] = {}
    for path in sorted(DBT_PROJECT_DIR.glob("models/**/_*__sources.yml")):
        for src in (yaml.safe_load(path.read_text()) or {}).get("sources", []):
            src_prov = (src.get("meta") or {}).get("provenance", MIMIC)
            for t in src.get("tables", []):
                key = f"{src['name']}.{t['name']}"
                prov = (t.get("meta") or {}).get("provenance", src_prov)
                sources[key] = prov if prov in PROVENANCES else MIMIC
                source_tables[key] = f"{src.get('schema', src['name'])}.{t.get('identifier', t['name'])}"
    deps: dict[str, list[str]] = {}
    model_tables: dict[str, str] = {}
    for path in sorted(DBT_PROJECT_DIR.glob("models/**/*.sql")):
        sql = path.read_text()
        deps[path.stem] = [f"ref:{m}" for m in _REF.findall(sql)] + \
                          [f"source:{a}.{b}" for a, b in _SOURCE.findall(sql)]
        layer = path.relative_to(DBT_PROJECT_DIR / "models").parts[0]  # staging / intermediate / marts / results
        model_tables[path.stem] = f"{layer}.{path.stem}"
    return sources, source_tables, deps, model_tables


@functools.lru_cache(maxsize=None)
def _model_provenance(model: str, _seen: frozenset = frozenset()) -> str:
    sources, _, deps, _ = _graph()
    if model in _seen or not deps.get(model):
        return MIMIC  # a cycle, or no readable input (macro-built model): fail closed
    for dep in deps[model]:
        kind, name = dep.split(":", 1)
        prov = sources.get(name, MIMIC) if kind == "source" else _model_provenance(name, _seen | {model})
        if prov != PUBLIC:
            return MIMIC
    return PUBLIC


def table_provenance(table: str) -> str:
    """`public` or `mimic` for a warehouse table named `schema.table` (unknown tables are `mimic`)."""
    sources, source_tables, _, model_tables = _graph()
    table = table.strip().lower()
    for key, t in source_tables.items():
        if t.lower() == table:
            return sources[key]
    for model, t in model_tables.items():
        if t.lower() == table:
            return _model_provenance(model)
    return MIMIC


def of_tables(tables) -> str:
    """Provenance of text built from all of `tables`: public only if there is at least one and each is public."""
    tables = list(tables or [])
    if not tables:
        return MIMIC
    return PUBLIC if all(table_provenance(t) == PUBLIC for t in tables) else MIMIC


def mimic_tables(tables) -> list[str]:
    """The tables among `tables` that are not public (for error messages)."""
    return [t for t in tables or [] if table_provenance(t) != PUBLIC]
