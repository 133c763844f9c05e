"""docs/kubernetes.md's values table is the one deploy/helm/values_table.py generates from values.yaml."""

from __future__ import annotations

import importlib.util

from tests.helm.manifests import REPO


def values_table():
    spec = importlib.util.spec_from_file_location("values_table", REPO / "deploy" / "helm" / "values_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_docs_values_table_is_current():
    module = values_table()
    assert module.doc_table((REPO / "docs" / "kubernetes.md").read_text()) == module.table(), (
        "run: .venv/bin/python deploy/helm/values_table.py --write"
    )


def test_every_value_has_a_description():
    assert values_table().undocumented_leaves() == []


def test_the_generator_notices_a_changed_default_and_an_undocumented_key():
    module = values_table()
    text = module.VALUES.read_text()
    changed = text.replace("  drainSeconds: 10\n", "  drainSeconds: 12\n", 1)
    assert changed != text and module.table(changed) != module.table(text)
    assert module.undocumented_leaves(text + "\nsurprise: 1\n") == ["surprise"]


def test_the_readme_links_the_kubernetes_doc():
    assert "docs/kubernetes.md" in (REPO / "README.md").read_text()
