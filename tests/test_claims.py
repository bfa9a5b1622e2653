"""The claims ledger (book/claims.md) stays honest: every claim points at a chapter section that
exists, and that chapter holds a cell tagged with the claim's id, the cell that checks it."""

import json
import os
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
LEDGER = ROOT / "book" / "claims.md"
NOTEBOOKS = ROOT / "notebooks"

#: The five articles, in the order of their files, with the number of claims each contributes.
#: Ids run a<article>-01 .. a<article>-NN without gaps, so a dropped row is noticed.
ARTICLES = {
    "a1": ("article-why-transformers", 24),
    "a2": ("article-magic", 28),
    "a3": ("article-detailed-look", 31),
    "a4": ("article-self-attention", 24),
    "a5": ("article-attention-in-transformers", 13),
}
VERDICTS = {"holds", "holds up to rounding", "loose", "wrong", "not checkable"}
COLUMNS = ["id", "claim", "where it is checked", "verdict", "evidence"]

ID = re.compile(r"a[1-5]-\d\d")
#: {doc}`Ch. 4 <../notebooks/04_scaling>`, "Why divide by √dₖ"
WHERE = re.compile(r"^\{doc\}`[^`<]*<\.\./notebooks/(?P<notebook>[^>]+)>`,\s*\"(?P<section>.+)\"$")


def cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def ledger_rows() -> list[dict]:
    rows, header = [], None
    for number, line in enumerate(LEDGER.read_text().splitlines(), start=1):
        if not line.startswith("|"):
            header = None
            continue
        fields = cells(line)
        if fields[0].lower() == "id":
            header = [f.lower() for f in fields]
            continue
        if set(line) <= set("|-: "):
            continue
        assert header == COLUMNS, f"claims.md line {number}: a table needs the columns {COLUMNS}"
        assert len(fields) == len(COLUMNS), f"claims.md line {number}: {len(fields)} cells"
        rows.append(dict(zip(COLUMNS, fields, strict=True), line=number))
    return rows


ROWS = ledger_rows()


def notebook_path(name: str) -> Path:
    return NOTEBOOKS / f"{name}.ipynb"


def load(name: str) -> dict:
    return json.loads(notebook_path(name).read_text())


def headings(name: str) -> set[str]:
    found = set()
    for cell in load(name)["cells"]:
        if cell["cell_type"] == "markdown":
            for line in "".join(cell["source"]).splitlines():
                match = re.match(r"#{1,6}\s+(.*\S)", line)
                if match:
                    found.add(match.group(1))
    return found


def tags(name: str) -> set[str]:
    return {t for c in load(name)["cells"] for t in c.get("metadata", {}).get("tags", [])}


def where(row: dict) -> tuple[str, str]:
    match = WHERE.match(row["where it is checked"])
    assert match, (
        f"claims.md line {row['line']} ({row['id']}): write where it is checked as "
        '{doc}`Ch. N <../notebooks/NN_name>`, "Section heading"'
    )
    return match["notebook"], match["section"]


def test_the_ledger_has_claims():
    assert len(ROWS) == sum(n for _, n in ARTICLES.values())


def test_ids_are_unique_and_run_without_gaps():
    ids = [row["id"] for row in ROWS]
    assert all(ID.fullmatch(i) for i in ids), [i for i in ids if not ID.fullmatch(i)]
    assert len(ids) == len(set(ids)), sorted({i for i in ids if ids.count(i) > 1})
    expected = [f"{a}-{n:02d}" for a, (_, count) in ARTICLES.items() for n in range(1, count + 1)]
    missing, unexpected = sorted(set(expected) - set(ids)), sorted(set(ids) - set(expected))
    assert ids == expected, f"missing: {missing}, unexpected: {unexpected}"


def test_every_id_of_the_claims_map_is_in_the_ledger():
    """The map that chapter owners tagged from (a file beside the repository, when present)."""
    path = Path(os.environ.get("CLAIMS_MAP", ROOT.parent / "claims_map.md"))
    if not path.exists():
        pytest.skip(f"no claims map at {path}; the ids are checked against ARTICLES above")
    mapped = {m for line in path.read_text().splitlines() for m in ID.findall(line[:12])}
    missing = sorted(mapped - {row["id"] for row in ROWS})
    assert not missing, f"ids of {path.name} missing from book/claims.md: {missing}"


def test_each_article_has_its_table_and_citation():
    text = LEDGER.read_text()
    bib = (ROOT / "book" / "references.bib").read_text()
    for article, (key, _) in ARTICLES.items():
        assert f"@misc{{{key}," in bib, key
        assert f"{{cite:t}}`{key}`" in text, f"claims.md: cite {key} for {article}"


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r["id"])
def test_verdict_is_from_the_allowed_set(row):
    assert row["verdict"] in VERDICTS, (
        f"{row['id']}: verdict {row['verdict']!r} is not one of {sorted(VERDICTS)}"
    )
    assert row["claim"] and row["evidence"], f"{row['id']}: a claim and a line of evidence"


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r["id"])
def test_link_resolves_to_a_chapter_section(row):
    notebook, section = where(row)
    assert notebook_path(notebook).exists(), f"{row['id']}: no notebook notebooks/{notebook}.ipynb"
    assert section in headings(notebook), (
        f"{row['id']}: {notebook}.ipynb has no heading {section!r}"
    )


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r["id"])
def test_cited_chapter_has_a_cell_tagged_with_the_claim(row):
    notebook, _ = where(row)
    tag = f"claim-{row['id']}"
    assert tag in tags(notebook), (
        f"missing tag {tag!r} in notebooks/{notebook}.ipynb: tag the cell that checks "
        f"{row['id']} ({row['claim']})"
    )


def test_claim_tags_name_claims_of_the_ledger():
    ids = {row["id"] for row in ROWS}
    stray = [
        f"{path.name}: {t}"
        for path in sorted(NOTEBOOKS.glob("*.ipynb"))
        for t in sorted(tags(path.stem))
        if t.startswith("claim-") and t.removeprefix("claim-") not in ids
    ]
    assert not stray, f"claim tags with no row in book/claims.md: {stray}"


def test_the_ledger_is_in_the_reference_part_before_the_glossary():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    reference = next(p for p in toc["parts"] if p["caption"] == "Reference")
    files = [c["file"] for c in reference["chapters"]]
    assert "book/claims" in files and files.index("book/claims") < files.index("book/glossary")
