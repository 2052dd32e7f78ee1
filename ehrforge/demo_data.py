"""Demo inputs: the open MIMIC-IV demo, and a stand-in note table built from PMC-Patients.

    python -m ehrforge.demo_data fetch --mimic-root data/mimic-iv-demo
    python -m ehrforge.demo_data notes --mimic-root ../shared/data/mimic-iv-demo \
        --pmc-csv ../shared/data/pmc-patients-sample/pmc_patients_sample.csv --out data/demo-note/note

`notes` writes `discharge.csv.gz` in MIMIC-IV-Note's schema (note_id, subject_id, hadm_id, note_type,
note_seq, charttime, storetime, text). Each demo admission gets one PMC-Patients case summary of the same
sex and the closest age (greedy in admission order, each summary used at most once). THE TEXT DOES NOT
DESCRIBE THE ADMISSION IT IS ASSIGNED TO: it is openly licensed case-report text (CC BY-NC-SA 4.0) that
stands in for credentialed MIMIC-IV-Note so the note pipeline runs end to end. The summary is laid out like
a MIMIC discharge summary: its first sentence under "Chief Complaint:", the first ~40% of sentences under
"History of Present Illness:", the rest under "Brief Hospital Course:". `discharge_provenance.csv` beside
it maps each note_id to its PMC-Patients uid and PMID for attribution.
"""

from __future__ import annotations

import argparse
import ast
import gzip
import hashlib
import re
import sys
import urllib.request
from pathlib import Path

import pandas as pd

from ehrforge.errors import InputDataError

PHYSIONET_DEMO_URL = "https://physionet.org/files/mimic-iv-demo/2.2/"
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9])")


def _read_gz_csv(path: Path, **kw) -> pd.DataFrame:
    try:
        return pd.read_csv(path, **kw)
    except FileNotFoundError:
        raise InputDataError(f"missing file {path}: check --mimic-root / MIMIC_ROOT") from None
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise InputDataError(f"cannot read {path} ({exc}): the file is corrupt or truncated; download it again") from exc


def fetch(mimic_root: Path) -> None:
    """Use MIMIC_ROOT when it already holds hosp/ and icu/; otherwise download the open demo (no credentials)."""
    if (mimic_root / "hosp").is_dir() and (mimic_root / "icu").is_dir():
        print(f"MIMIC-IV data found at {mimic_root}")
        return
    mimic_root.mkdir(parents=True, exist_ok=True)
    sums_url = PHYSIONET_DEMO_URL + "SHA256SUMS.txt"
    print(f"downloading the MIMIC-IV demo v2.2 from {PHYSIONET_DEMO_URL} into {mimic_root}")
    try:
        sums = urllib.request.urlopen(sums_url, timeout=30).read().decode()
    except OSError as exc:
        raise InputDataError(
            f"cannot reach PhysioNet ({exc}). Download https://physionet.org/content/mimic-iv-demo/2.2/ by hand "
            f"and set MIMIC_ROOT to the folder that holds hosp/ and icu/."
        ) from exc
    for line in sums.splitlines():
        digest, name = line.split(maxsplit=1)
        if not name.endswith(".csv.gz"):
            continue
        target = mimic_root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".part")
        urllib.request.urlretrieve(PHYSIONET_DEMO_URL + name, tmp)
        if hashlib.sha256(tmp.read_bytes()).hexdigest() != digest:
            tmp.unlink()
            raise InputDataError(f"checksum mismatch for {name}: the download was corrupted; run again")
        tmp.rename(target)
        print(f"  {name}")


def _age_years(raw: str) -> float:
    """PMC-Patients ages are lists of [value, unit] pairs in string form, e.g. "[[44.0, 'year']]"."""
    try:
        pairs = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return float("nan")
    scale = {"year": 1.0, "month": 1 / 12, "week": 1 / 52, "day": 1 / 365, "hour": 1 / 8760}
    return sum(float(v) * scale.get(str(u), 0.0) for v, u in pairs)


def _as_discharge_summary(text: str, sex: str) -> str:
    sentences = [s.strip() for s in _SENTENCE.split(" ".join(text.split())) if s.strip()]
    cut = max(1, round(len(sentences) * 0.4))
    hpi, course = sentences[:cut], sentences[cut:] or sentences[-1:]
    return "\n".join([
        " ",
        "Name:  ___                     Unit No:   ___",
        " ",
        "Admission Date:  ___              Discharge Date:   ___",
        " ",
        f"Date of Birth:  ___             Sex:   {sex}",
        " ",
        "Chief Complaint:",
        sentences[0] if sentences else "",
        " ",
        "History of Present Illness:",
        " ".join(hpi),
        " ",
        "Brief Hospital Course:",
        " ".join(course),
        " ",
    ])


def build_demo_notes(mimic_root: Path, pmc_csv: Path, out_dir: Path) -> pd.DataFrame:
    if not pmc_csv.is_file():
        raise InputDataError(f"missing PMC-Patients file {pmc_csv}: set PMC_PATIENTS_CSV or --pmc-csv")
    pmc = pd.read_csv(pmc_csv, dtype=str)
    need = {"patient_uid", "PMID", "text", "age", "gender"}
    if not need <= set(pmc.columns):
        raise InputDataError(f"{pmc_csv} lacks column(s) {sorted(need - set(pmc.columns))}; expected PMC-Patients format")
    pmc["age_years"] = pmc["age"].map(_age_years)
    pmc = pmc.dropna(subset=["text", "age_years"]).sort_values("patient_uid").reset_index(drop=True)

    adm = _read_gz_csv(mimic_root / "hosp" / "admissions.csv.gz", usecols=["subject_id", "hadm_id", "admittime", "dischtime"])
    pat = _read_gz_csv(mimic_root / "hosp" / "patients.csv.gz", usecols=["subject_id", "gender", "anchor_age", "anchor_year"])
    adm = adm.merge(pat, on="subject_id").sort_values(["admittime", "hadm_id"]).reset_index(drop=True)
    adm["age"] = adm["anchor_age"] + pd.to_datetime(adm["admittime"]).dt.year - adm["anchor_year"]

    used: set[int] = set()
    rows = []
    seq: dict[int, int] = {}
    for a in adm.itertuples():
        pool = pmc[(pmc["gender"] == a.gender) & ~pmc.index.isin(used)]
        if pool.empty:
            continue
        best = (pool["age_years"] - a.age).abs().sort_values(kind="stable").index[0]
        used.add(best)
        note = pmc.loc[best]
        seq[a.subject_id] = seq.get(a.subject_id, 0) + 1
        rows.append({
            "note_id": f"{a.subject_id}-DS-{seq[a.subject_id]}",
            "subject_id": a.subject_id,
            "hadm_id": a.hadm_id,
            "note_type": "DS",
            "note_seq": seq[a.subject_id],
            "charttime": a.dischtime,
            "storetime": a.dischtime,
            "text": _as_discharge_summary(note["text"], a.gender),
            "pmc_patient_uid": note["patient_uid"],
            "pmid": note["PMID"],
            "pmc_age_years": round(float(note["age_years"]), 1),
            "admission_age": a.age,
        })
    notes = pd.DataFrame(rows)
    out_dir.mkdir(parents=True, exist_ok=True)
    cols = ["note_id", "subject_id", "hadm_id", "note_type", "note_seq", "charttime", "storetime", "text"]
    tmp = out_dir / "discharge.csv.gz.part"
    notes[cols].to_csv(tmp, index=False, compression="gzip")
    tmp.rename(out_dir / "discharge.csv.gz")
    prov = notes[["note_id", "pmc_patient_uid", "pmid", "pmc_age_years", "admission_age"]].assign(
        license="CC BY-NC-SA 4.0", source="PMC-Patients (Zhao et al., Sci Data 2023)")
    prov.to_csv(out_dir / "discharge_provenance.csv", index=False)
    return notes


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="demo inputs for ehrforge")
    sub = parser.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fetch", help="download the MIMIC-IV demo if MIMIC_ROOT lacks it")
    f.add_argument("--mimic-root", type=Path, required=True)
    n = sub.add_parser("notes", help="build a demo note/discharge table from PMC-Patients")
    n.add_argument("--mimic-root", type=Path, required=True)
    n.add_argument("--pmc-csv", type=Path, required=True)
    n.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        if args.cmd == "fetch":
            fetch(args.mimic_root)
        else:
            notes = build_demo_notes(args.mimic_root, args.pmc_csv, args.out)
            print(f"wrote {len(notes)} demo discharge notes to {args.out}/discharge.csv.gz "
                  "(PMC-Patients text; it does NOT describe the admissions it is assigned to)")
    except InputDataError as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()
