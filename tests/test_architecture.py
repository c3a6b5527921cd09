"""The checklists of docs/architecture.md that a test can check: every spec field has a row in the README's spec
table, every endpoint a row in its endpoint table, every rule and remedy id a mention in docs/analysis.md, and
every folder the map names exists (no database, no training)."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel

from analysis.rules import RULES
from contract.spec import JobSpec

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
ANALYSIS_DOC = (ROOT / "docs" / "analysis.md").read_text()
ARCHITECTURE_DOC = (ROOT / "docs" / "architecture.md").read_text()


def _section(text: str, heading: str) -> str:
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def _model_of(annotation) -> type[BaseModel] | None:
    """The pydantic model inside `X`, `X | None`: a section of the spec with fields of its own."""
    for candidate in (annotation, *getattr(annotation, "__args__", ())):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def undocumented(model: type[BaseModel], table: str, prefix: str = "") -> list[str]:
    """Dotted names with no row: a field is documented by a row naming it, which covers a section's fields too
    (`callbacks.early_stopping` documents its Keras parameters at once); otherwise each of its fields must be."""
    missing = []
    for name, info in model.model_fields.items():
        dotted = f"{prefix}{name}"
        if f"`{dotted}`" in table:
            continue
        section = _model_of(info.annotation)
        if section is None:
            missing.append(dotted)
        else:
            missing += undocumented(section, table, f"{dotted}.")
    return missing


def test_every_spec_field_has_a_row_in_the_readme():
    assert undocumented(JobSpec, _section(README, "The job spec")) == []


def test_an_undocumented_field_is_found():
    class Extra(BaseModel):
        depth: int = 1

    class Spec(JobSpec):
        brand_new: int = 0
        nested: Extra = Extra()

    assert undocumented(Spec, _section(README, "The job spec")) == ["brand_new", "nested.depth"]


def test_every_endpoint_has_a_row_in_the_readme():
    from api.main import app

    def shape(path: str) -> str:
        return re.sub(r"\{[^}]*\}", "{}", path)

    table = _section(README, "Endpoints")
    documented = {shape(p) for p in re.findall(r"`(?:GET|POST|PUT|PATCH|DELETE) (/[^`?\s]*)", table)}
    builtin = {app.openapi_url, app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url}
    routes = {shape(r.path) for r in app.routes if getattr(r, "methods", None) and r.path not in builtin}
    assert routes - documented == set()


def test_every_rule_and_remedy_is_in_the_analysis_doc():
    remedy_ids = set()
    for source in (ROOT / "analysis" / "remedies").glob("*.py"):
        remedy_ids |= set(re.findall(r'\bid="([a-z_]+)"', source.read_text()))
    assert len(remedy_ids) > 10
    assert [r for r in RULES if f"`{r}`" not in ANALYSIS_DOC and r not in ANALYSIS_DOC] == []
    assert sorted(r for r in remedy_ids if r not in ANALYSIS_DOC) == []


def test_every_folder_on_the_map_exists_and_every_package_is_on_it():
    table = _section(ARCHITECTURE_DOC, "Who owns what")
    named = set(re.findall(r"^\| `([a-z_]+)/` \|", table, flags=re.M))
    assert named, "the ownership table names no folder"
    assert sorted(n for n in named if not (ROOT / n).is_dir()) == []
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"samples"}
    assert sorted(packages - named) == []
