"""The application graph: Ingress -> Retriever and Generator, with the Collections registry beside them, composed
with deployment handles from the one typed config.

Deploy with ``rag serve --index DIR``, or the Ray way with ``serve run configs/serve.yaml``; both build the graph
with ``build_app``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import cast

from ray import serve
from ray.serve import Deployment

from rag.config import load_settings, resolve_keys
from serving.collections import CollectionsDeployment
from serving.deployments import GeneratorDeployment, RetrieverDeployment
from serving.ingress import Ingress


def build_app(args: dict) -> serve.Application:
    """The application graph. ``args``: ``config`` (YAML path), ``set`` (list of overrides), and optionally ``index``
    (with ``docs``): a collection named default, beside those the config names.

    The API keys are resolved here, where the user's environment is, and handed to the ingress replica as an argument:
    not inside the settings every replica receives, and not through a runtime environment, which Ray writes to its
    logs."""
    overrides = list(args.get("set", []))
    if args.get("index"):
        overrides.append(f"serve.collections.default.index={json.dumps(str(args['index']))}")
        if args.get("docs"):
            overrides.append(f"serve.collections.default.docs={json.dumps(str(args['docs']))}")
    settings = load_settings(args.get("config"), overrides)
    cfg = settings.serve
    if not cfg.collections:
        raise ValueError("nothing to serve: give args.index (rag serve --index DIR) or serve.collections in the config")
    for collection in cfg.collections.values():
        # Relative to where the application is built: replicas may start in another working directory.
        collection.index = str(Path(collection.index).resolve())
        collection.docs = collection.docs and str(Path(collection.docs).resolve())
    settings_json = settings.model_dump_json(exclude={"serve": {"api_key"}})
    # The deployments are decorated as Serve's docs write them; mypy keeps a class's type through class decorators,
    # so it is told what @serve.deployment returns.
    collections = cast(Deployment, CollectionsDeployment).bind(settings_json)
    retriever = (
        cast(Deployment, RetrieverDeployment).options(**cfg.retriever.serve_options()).bind(settings_json, collections)
    )
    generator = cast(Deployment, GeneratorDeployment).options(**cfg.generator.serve_options()).bind(settings_json)
    ingress_options = cfg.ingress.serve_options()
    ingress_options["backpressure_config"] = {"status_code": 503, "retry_after_s": cfg.retry_after_s}
    ingress = cast(Deployment, Ingress).options(**ingress_options)
    return ingress.bind(retriever, generator, collections, settings_json, resolve_keys(cfg))
