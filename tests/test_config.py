import pytest
from pydantic import ValidationError

from cli.main import DEFAULT_CONFIG
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
    with pytest.raises(ValueError, match="section.key=value"):
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
