"""The KubeRay manifests in deploy/kuberay/, checked offline against KubeRay v1.7.0's own CRD schemas
(../shared/kuberay/), strictly: a field the schema does not know is an error here, where the API server would
drop it without a word. The service's serveConfigV2 must be a config Serve and the project's own loader accept."""

from __future__ import annotations

import functools

import jsonschema
import pytest
import yaml

from tests.conftest import REPO

CRDS = REPO.parent / "shared" / "kuberay" / "crds"
MANIFESTS = sorted((REPO / "deploy" / "kuberay").glob("*.yaml"))


def strict(schema: dict) -> dict:
    """The CRD's OpenAPI schema as JSON Schema, refusing unknown fields wherever it lists properties."""
    if not isinstance(schema, dict):
        return schema
    out = {
        k: strict(v) if isinstance(v, dict) else [strict(i) for i in v] if isinstance(v, list) else v
        for k, v in schema.items()
        if k != "properties"
    }
    if "properties" in schema:
        out["properties"] = {k: strict(v) for k, v in schema["properties"].items()}
        if not schema.get("x-kubernetes-preserve-unknown-fields") and "additionalProperties" not in schema:
            out["additionalProperties"] = False
    if schema.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    return out


@functools.cache
def crd_schema(kind: str) -> dict:
    """Read once per kind: the CRDs are megabytes of YAML (libyaml's parser where PyYAML has it)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    for path in CRDS.glob("*.yaml"):
        crd = yaml.load(path.read_text(), Loader=loader)
        if crd["spec"]["names"]["kind"] == kind:
            version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
            return strict(version["schema"]["openAPIV3Schema"])
    raise LookupError(kind)


def test_there_are_manifests_to_check():
    assert {p.name for p in MANIFESTS} == {"rayservice.yaml", "rayjob-ingest.yaml", "rayjob-eval.yaml"}
    assert CRDS.is_dir(), f"KubeRay's CRDs are expected at {CRDS}"


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifest_matches_the_kuberay_schema(path):
    manifest = yaml.safe_load(path.read_text())
    assert manifest["apiVersion"] == "ray.io/v1"
    errors = sorted(jsonschema.Draft7Validator(crd_schema(manifest["kind"])).iter_errors(manifest), key=str)
    assert not errors, "\n".join(f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)


def test_a_misspelt_field_is_caught():
    manifest = yaml.safe_load((REPO / "deploy" / "kuberay" / "rayservice.yaml").read_text())
    manifest["spec"]["rayClusterConfig"]["headGroupSpec"]["rayStartparams"] = {}
    assert list(jsonschema.Draft7Validator(crd_schema("RayService")).iter_errors(manifest))


def test_the_serve_config_is_one_serve_and_the_project_accept(monkeypatch):
    from ray.serve.schema import ServeDeploySchema

    from serving.app import build_app

    manifest = yaml.safe_load((REPO / "deploy" / "kuberay" / "rayservice.yaml").read_text())
    config = ServeDeploySchema.model_validate(yaml.safe_load(manifest["spec"]["serveConfigV2"]))
    (app,) = config.applications
    assert app.import_path == "serving.app:build_app"
    monkeypatch.chdir(REPO)  # the image's working directory holds configs/
    monkeypatch.setenv("RAG_API_KEY", "from-the-secret")
    built = build_app(app.args)  # the typed config validates every override; nothing is deployed
    assert built is not None
    # The key comes from the environment (a Secret), never from the manifest.
    assert "api_key" not in manifest["spec"]["serveConfigV2"] and "from-the-secret" not in path_texts()


def path_texts() -> str:
    return "".join(p.read_text() for p in MANIFESTS)


def test_the_app_config_names_the_key_by_reference(monkeypatch, tmp_path):
    from ray.serve.schema import ServeDeploySchema

    from serving.app import build_app

    config = ServeDeploySchema.model_validate(yaml.safe_load((REPO / "configs" / "serve.yaml").read_text()))
    (app,) = config.applications
    assert app.runtime_env == {} and "serve.api_key_env=RAG_API_KEY" in app.args["set"]
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("RAG_API_KEY", "from-the-environment")
    ingress = build_app({**app.args, "index": str(tmp_path / "index")})
    # The key the ingress replica is handed, read from the variable the config names.
    assert ingress._bound_deployment._replica_config.init_args[-1] == {"from-the-environment": None}


def _charted(dashboard: dict) -> set[str]:
    import re

    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    return {re.sub(r"_(bucket|total)$", "", m) for m in re.findall(r"\bray_(rag_\w+)", exprs)}


def test_the_dashboard_charts_every_metric_the_service_exports():
    import json

    from serving.telemetry import GeneratorMetrics, IngressMetrics, RetrieverMetrics

    exported = {m._name for cls in (IngressMetrics, RetrieverMetrics, GeneratorMetrics) for m in vars(cls()).values()}
    dashboard = json.loads((REPO / "deploy" / "grafana" / "rag.json").read_text())
    assert _charted(dashboard) == exported
    assert all(p["datasource"]["uid"] == "${datasource}" for p in dashboard["panels"])
