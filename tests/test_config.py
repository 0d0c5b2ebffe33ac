import pytest
from pydantic import ValidationError

from cli.options import DEFAULT_CONFIG
from rag.config import Settings, load_settings


def test_default_yaml_spells_out_the_code_defaults():
    assert load_settings(DEFAULT_CONFIG) == Settings()


def test_yaml_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("chunking:\n  chunk_size: 500\ningest:\n  embed:\n    actors: 3\n")
    s = load_settings(path, ["ingest.embed.num_gpus=0.25", "index.kind=hnsw", "chunking.chunk_size=400"])
    assert s.chunking.chunk_size == 400
    assert s.ingest.embed.actors == 3
    assert s.ingest.embed.num_gpus == 0.25
    assert s.index.kind == "hnsw"


@pytest.mark.parametrize(
    "override, message",
    [
        ("chunking.chunk_sise=10", "chunk_sise"),
        ("chunking.chunk_overlap=2000", "chunk_overlap"),
        ("index.kind=annoy", "kind"),
        ("ingest.embed.num_gpus=-1", "num_gpus"),
    ],
)
def test_bad_values_are_named(override, message):
    with pytest.raises(ValidationError, match=message):
        load_settings(None, [override])


def test_override_without_equals_is_rejected():
    with pytest.raises(ValueError, match=r"section\.key=value"):
        load_settings(None, ["chunking.chunk_size"])


def test_missing_config_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="config file not found"):
        load_settings(tmp_path / "nope.yaml")


def test_the_api_key_never_shows_in_dumps_or_reprs(monkeypatch):
    from rag.config import resolve_api_key

    settings = load_settings(None, ["serve.api_key=hunter2"])
    assert "hunter2" not in settings.model_dump_json() and "hunter2" not in repr(settings)
    assert resolve_api_key(settings.serve) == "hunter2"
    monkeypatch.setenv("RAG_API_KEY", "from-env")
    assert resolve_api_key(settings.serve) == "from-env"


def test_serve_refuses_an_open_port_without_a_key(tmp_path, capsys, monkeypatch):
    from cli.main import main

    monkeypatch.delenv("RAG_API_KEY", raising=False)
    assert main(["serve", "--index", str(tmp_path), "--set", "serve.host=0.0.0.0"]) == 2
    assert "--insecure" in capsys.readouterr().err


def test_collections_and_scoped_keys(monkeypatch):
    from rag.config import resolve_keys

    two = ["serve.collections.a.index=/x/a", "serve.collections.b.index=/x/b", "serve.collections.b.docs=/x/docs"]
    settings = load_settings(None, [*two, "serve.scoped_keys=[{key_env: KEY_A, collections: [a]}]"])
    assert settings.serve.default() == "a" and settings.serve.collections["b"].docs == "/x/docs"
    monkeypatch.delenv("RAG_API_KEY", raising=False)
    monkeypatch.delenv("KEY_A", raising=False)
    with pytest.raises(ValueError, match="KEY_A, which is not set"):  # never a service left open by a missing key
        resolve_keys(settings.serve)
    monkeypatch.setenv("KEY_A", "ka")
    monkeypatch.setenv("RAG_API_KEY", "admin")
    assert resolve_keys(settings.serve) == {"admin": None, "ka": ["a"]}
    with pytest.raises(ValidationError, match=r"\['c'\] are named but not configured"):
        load_settings(None, [*two, "serve.default_collection=c"])
    with pytest.raises(ValidationError, match="collection name"):
        load_settings(None, ["serve.collections.bad name.index=/x"])


@pytest.mark.parametrize(
    "name",
    [
        "../x.pdf",
        "a/b.pdf",
        "a\\b.pdf",
        ".hidden.pdf",
        "x..pdf",
        "",
        "x" * 201 + ".pdf",
        "tab\there.pdf",
        "metadata.jsonl",
        "notes.txt",
    ],
)
def test_document_names_that_are_refused(name):
    from serving.collections import check_document_name
    from serving.refusals import ChangeRefused

    with pytest.raises(ChangeRefused):
        check_document_name(name)


def test_document_names_that_are_taken():
    from serving.collections import check_document_name

    assert check_document_name("2023 Q3 AAPL (final).PDF") == "2023 Q3 AAPL (final).PDF"
