"""``rag ingest``: plan the incremental run, execute the Ray Data pipeline, merge with what is reused, publish a new
index version (rag.store.versions) under the index's lock."""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import numpy as np

from ingest.cluster import (
    ClusterShrank,
    PoolDoesNotFit,
    RunWatch,
    alive_resources,
    check_fits,
    cpus_needed,
    fit_pool,
    sized_for,
    sized_pool,
)
from ingest.languages import languages_of, models_for
from ingest.metadata_extraction import read_sidecar
from ingest.planning import Plan, SourceFile, discover, fingerprint, plan_run, unusable_entries
from ingest.progress import Progress, ProgressPoller, start_counter
from rag.clock import utc_now
from rag.config import Settings
from rag.ray_runtime import ensure_ray, own_message
from rag.store.errors import SEGMENTS, VERSIONS
from rag.store.files import (
    EmbeddingInfo,
    EmbedWorker,
    FileEntry,
    IndexInfo,
    Manifest,
    RunStats,
    SegmentRef,
    check_sizes,
    read_manifest,
)
from rag.store.merging import due, merge
from rag.store.segments import Located
from rag.store.versions import IndexDir, NoIndex, Writer

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3  # runs of the pipeline when the cluster shrinks under it


class IngestError(Exception):
    """The job cannot start or cannot write its output; the message says why. ``retryable``: the cause can pass (a
    stall, a cluster that lost what the pool needs), so the same job may succeed when run again."""

    def __init__(self, message: str, retryable: bool = False):
        super().__init__(message)
        self.retryable = retryable


@dataclass
class PipelineOutput:
    segments: set[str] = field(default_factory=set)  # folders the run's tasks wrote in its staging folder
    chunks: Counter[str] = field(default_factory=Counter)  # file -> chunks embedded
    dim: int | None = None  # the vectors', once one was embedded
    pages: dict[str, int] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, dict] = field(default_factory=dict)  # file -> DocMetadata fields
    ocr: dict[str, list[dict]] = field(default_factory=dict)  # file -> its pages without a text layer (ingest.ocr)
    workers: Counter[tuple[str, str]] = field(default_factory=Counter)  # (worker, device) -> chunks embedded
    busy: dict[tuple[str, str], float] = field(default_factory=lambda: defaultdict(float))  # -> seconds encoding

    def absorb(self, other: PipelineOutput) -> None:
        """``other``'s files and segments added to these (a run of the pipeline per embedding model)."""
        self.segments |= other.segments
        self.chunks.update(other.chunks)
        self.dim = self.dim or other.dim
        self.pages.update(other.pages)
        self.failures.update(other.failures)
        self.notes.update(other.notes)
        self.metadata.update(other.metadata)
        self.ocr.update(other.ocr)
        self.workers.update(other.workers)
        for key, seconds in other.busy.items():
            self.busy[key] += seconds


@dataclass
class Previous:
    manifest: Manifest
    segments: list[Located]


@dataclass
class IngestResult:
    manifest: Manifest
    plan: Plan
    version: str

    @property
    def chunks_total(self) -> int:
        return self.manifest.index.vectors


def _refuse_strangers(index: IndexDir) -> None:
    """A folder that holds no index but other files is someone's folder, given as --index by mistake."""
    if index.current_name() is not None or not index.root.exists():
        return
    strangers = [p.name for p in index.root.iterdir() if p.name not in (VERSIONS, SEGMENTS) and p.name[0] != "."]
    if strangers:
        raise IngestError(
            f"{index.root} holds no index but other files ({', '.join(sorted(strangers)[:3])}): "
            "refusing to write an index among them"
        )


def _load_previous(writer: Writer) -> Previous | None:
    try:
        version = writer.index.current()
    except NoIndex:
        return None
    try:
        segments = writer.segments_of(version)
        for segment in segments:
            check_sizes(segment.path, segment.info.stored)
        return Previous(read_manifest(version.path), segments)
    except Exception as err:  # an unreadable old index costs a full re-embed, not the run
        log.warning("previous index version %s is unreadable (%s); re-ingesting everything", version.path, err)
        return None


def run_pipeline(
    files: list[SourceFile],
    settings: Settings,
    sidecar: dict[str, dict],
    staging: Path,
    progress: Callable[[Progress], None] | None = None,
    share: Sequence[Located] = (),
) -> PipelineOutput:
    """The pipeline's output over ``files``, its segments written into the folder ``staging`` (taking up the IVF
    training of one of ``share`` where they can: rag.store.segments.write_staged). A cluster that loses
    nodes mid-run gets the run again with a pool fitted to what is left (up to MAX_ATTEMPTS); a run that cannot fit
    or stalls ends in IngestError."""
    ensure_ray(settings.ray)  # first: it sets up Ray Data's logging, read when Ray Data is imported
    from ray.data.exceptions import ExecutionTimeoutError

    try:
        resources = alive_resources()
        settings = sized_for(sized_pool(settings, resources), len(files))
        check_fits(settings, resources)
    except PoolDoesNotFit as err:
        raise IngestError(str(err)) from None
    attempt = 1
    while True:
        try:
            return _run_once(files, settings, sidecar, staging, progress, share)
        except ClusterShrank as err:
            if attempt == MAX_ATTEMPTS:
                raise IngestError(
                    f"{err}: the cluster kept losing resources, gave up after {attempt} runs of the pipeline",
                    retryable=True,
                ) from None
            try:
                settings = fit_pool(settings, alive_resources())
            except PoolDoesNotFit as no_fit:
                raise IngestError(f"{err}, and {no_fit}", retryable=True) from None
            attempt += 1
            log.warning(
                "%s: running the pipeline again with %d embedding actors (attempt %d of %d)",
                err,
                settings.ingest.embed.actors,
                attempt,
                MAX_ATTEMPTS,
            )
        except ExecutionTimeoutError as err:
            raise IngestError(
                f"the ingestion stalled (ingest.stall_timeout_s {settings.ingest.stall_timeout_s:g}): {err}",
                retryable=True,
            ) from None


def _run_once(
    files: list[SourceFile],
    settings: Settings,
    sidecar: dict[str, dict],
    staging: Path,
    progress: Callable[[Progress], None] | None,
    share: Sequence[Located],
) -> PipelineOutput:
    """One run of the pipeline; what a run before it that failed wrote stays unnamed in ``staging``, and goes with
    it."""
    import ray

    from ingest.pipeline import build_dataset

    out = PipelineOutput()
    pool = settings.ingest.embed
    log.info(
        "running the pipeline over %d files: %d embedding actors x %g CPUs%s",
        len(files),
        pool.actors,
        pool.num_cpus,
        f", at most {settings.ingest.max_cpus:g} CPUs in all" if settings.ingest.max_cpus else "",
    )
    counter = start_counter()
    dataset = build_dataset(files, settings, sidecar, counter, str(staging.resolve()), share)
    poller = ProgressPoller(counter, len(files), sum(f.size_bytes for f in files), progress or (lambda _: None))
    with RunWatch(dataset, settings) as watch, poller:
        try:
            for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
                _collect(cast(dict[str, np.ndarray], batch), out)  # batch_format="numpy"
        except Exception as err:
            # Tasks lost with a node can fail the execution before the watch sees the node go: the same case.
            watch.raise_if_stopped()
            if isinstance(err, ray.exceptions.RayActorError) and err.actor_init_failed:
                # The actors' own error (a model path that does not exist, out of GPU memory) in one line; retryable
                # because a service's job cannot tell a setting that is wrong from memory that frees up.
                model = settings.embedding.model
                raise IngestError(
                    f"the embedding actors could not load {model!r}: {own_message(err)}", retryable=True
                ) from None
            if cpus_needed(settings) > alive_resources().get("CPU", 0):
                raise ClusterShrank(f"the execution failed ({type(err).__name__}) and the cluster lost CPUs") from err
            raise
        finally:
            ray.kill(counter)
    watch.raise_if_stopped()  # a stopped execution ends the loop early, without an error
    if progress:
        progress(Progress(len(files), "indexing", len(out.pages), sum(out.pages.values()), out.chunks.total()))
    return out


def _collect(batch: dict[str, np.ndarray], out: PipelineOutput) -> None:
    """One batch of the pipeline's rows (one per file and segment, ingest.pipeline.to_segment) into ``out``."""
    columns = ("file", "n_pages", "note", "error", "metadata", "ocr", "chunks", "workers", "segment", "dim")
    for file, n_pages, note, error, meta, ocr, chunks, workers, segment, dim in zip(
        *(batch[c] for c in columns), strict=True
    ):
        out.pages[file] = int(n_pages)
        if note:
            out.notes[file] = note
        if error:
            out.failures[file] = error
        if file not in out.metadata:
            out.metadata[file] = {k: v for k, v in json.loads(meta).items() if v is not None}
            out.ocr[file] = json.loads(ocr)
        out.chunks[file] += int(chunks)
        for key, (n, seconds) in json.loads(workers).items():
            worker, device = key.split("|", 1)
            out.workers[(worker, device)] += n
            out.busy[(worker, device)] += seconds
        if segment:
            out.segments.add(segment)
            out.dim = int(dim)


def _carried(previous: Previous | None, keep_files: set[str]) -> list[Located]:
    """The previous version's segments, each with the files not kept masked out; those left with nothing dropped."""
    carried = []
    for segment in previous.segments if previous else []:
        deleted = sorted(set(segment.ref.deleted) | (set(segment.info.files) - keep_files))
        rows = segment.info.rows - sum(segment.info.files.get(f, 0) for f in deleted)
        if rows:
            carried.append(
                Located(SegmentRef(name=segment.ref.name, rows=rows, deleted=deleted), segment.path, segment.info)
            )
    return carried


def _entries(plan: Plan, previous: Previous | None, new: PipelineOutput) -> list[FileEntry]:
    per_file = new.chunks
    old = previous.manifest.entries() if previous else {}
    entries = []
    for src in plan.to_process:
        base = {
            "file": src.file,
            "doc_hash": src.doc_hash,
            "size_bytes": src.size_bytes,
            "overrides_hash": src.overrides_hash,
            "metadata": new.metadata.get(src.file, {}),
        }
        if src.file in new.failures:
            entries.append(FileEntry(**base, status="failed", reason=new.failures[src.file]))
        else:
            entries.append(
                FileEntry(
                    **base,
                    status="indexed",
                    pages=new.pages.get(src.file, 0),
                    chunks=int(per_file.get(src.file, 0)),
                    note=new.notes.get(src.file),
                    ocr=new.ocr.get(src.file, []),
                )
            )
    for src in plan.unchanged:
        entries.append(old[src.file].model_copy(update={"status": "skipped_unchanged"}))
    for name in plan.missing:
        note = "source file is gone; its chunks stay until a run with --prune"
        entries.append(old[name].model_copy(update={"status": "skipped_unchanged", "note": note}))
    entries += [
        FileEntry(file=name, status="failed", doc_hash="", size_bytes=0, reason=reason)
        for name, reason in plan.unusable.items()
    ]
    return sorted(entries, key=lambda e: e.file)


def run_ingest(
    docs_dir: str | Path,
    index_dir: str | Path,
    settings: Settings,
    prune: bool = False,
    wait_s: float | None = 0,
    progress: Callable[[Progress], None] | None = None,
) -> IngestResult:
    """Index ``docs_dir`` into a new version of ``index_dir``, reusing what did not change, and make it current.

    One ingestion writes an index at a time: ``wait_s`` is how long to wait for another (None: as long as it
    takes), past which IndexBusy. ``progress`` is called at once, when the plan is made, every second while the
    pipeline runs (ingest.progress) and when it has run."""
    started = time.perf_counter()
    if progress:
        progress(Progress(0))
    docs_dir, index_dir = Path(docs_dir), Path(index_dir)
    if not docs_dir.is_dir():
        raise IngestError(f"documents folder not found: {docs_dir}")
    _refuse_strangers(IndexDir(index_dir))  # before the lock, which would leave its file in that folder
    with IndexDir(index_dir).writing(wait_s, purpose=f"an ingestion of {docs_dir}") as writer:
        sidecar = read_sidecar(docs_dir)
        sources = discover(docs_dir, sidecar)
        previous = _load_previous(writer)
        if not sources and previous is None:
            raise IngestError(f"no files in {docs_dir}")
        languages = languages_of(sources, settings, previous.manifest if previous else None)
        models = models_for(settings, languages)
        fp = fingerprint(settings)
        plan = plan_run(sources, previous.manifest if previous else None, fp, prune)
        plan.unusable = unusable_entries(docs_dir)
        if progress:  # before Ray starts: a watcher knows at once what the run has to do
            progress(Progress(len(plan.to_process), "starting" if plan.to_process else "indexing"))
        for src in plan.to_process:
            log.info("to process: %s (%s)", src.file, plan.reasons[src.file])
        log.info(
            "%d files to process, %d unchanged, %d gone (%s)",
            len(plan.to_process),
            len(plan.unchanged),
            len(plan.missing) + len(plan.pruned),
            "pruned" if prune else "kept",
        )
        segments = _carried(previous, {s.file for s in plan.unchanged} | set(plan.missing))
        legacy = previous.manifest.embedding.model if previous else settings.embedding.model  # of unnamed segments
        new, dims = PipelineOutput(), {}
        with writer.staging() as staging:
            for model in dict.fromkeys(models[src.file] for src in plan.to_process):
                # a run of the pipeline per embedding model: each file's vectors come from the model of its language
                files = [src for src in plan.to_process if models[src.file] == model]
                log.info("embedding %d files with %s", len(files), model)
                # The collection's trainings: a run's first segments, with none before them, each train their own.
                share = [s for s in segments if s.info.training and s.embedded_by(legacy) == model]
                out = run_pipeline(files, _with_model(settings, model), sidecar, staging, progress, share)
                new.absorb(out)
                dims[model] = out.dim
            segments += [writer.take(staging / name) for name in sorted(new.segments)]
        shutil.rmtree(staging, ignore_errors=True)  # what a pipeline run that failed and was run again wrote
        merging = due(segments, settings.index)
        if merging and progress:
            embedded = new.chunks.total()
            progress(Progress(len(plan.to_process), "merging", len(new.pages), sum(new.pages.values()), embedded))
        segments = merge(writer, segments, merging, settings.index, legacy)
        # the Latin-script files' model first (the manifest's embedding), the other scripts' after it
        used = sorted(set(models.values()), key=lambda m: m != settings.embedding.model) or [settings.embedding.model]
        infos = [_embedding_info(_with_model(settings, m), dims.get(m), previous, fp) for m in used]
        manifest = _manifest(docs_dir, settings, fp, infos, plan, previous, new, segments, started, languages)
        version = writer.publish_manifest(manifest, settings.index.keep_versions)
    log.info("published %s as version %s (%d segments)", index_dir, version, len(segments))
    return IngestResult(manifest, plan, version)


def _manifest(
    docs_dir: Path,
    settings: Settings,
    fp: str,
    embeddings: list[EmbeddingInfo],
    plan: Plan,
    previous: Previous | None,
    new: PipelineOutput,
    segments: list[Located],
    started: float,
    languages: dict[str, str | None],
) -> Manifest:
    """The manifest that describes the run and the segments its version is made of; ``embeddings``: the Latin-script
    files' model first, then the other scripts', where the collection has both."""
    seconds = time.perf_counter() - started
    pages_processed = sum(new.pages.values())
    newest = segments[-1].info if segments else None
    return Manifest(
        created_at=utc_now(),
        docs_dir=str(docs_dir.resolve()),
        fingerprint=fp,
        # No secret is ever written out: the API key is left out (and would read as asterisks anyway).
        settings=settings.model_dump(mode="json", exclude={"ray": True, "serve": {"api_key"}}),
        embedding=embeddings[0],
        multilingual=embeddings[1] if len(embeddings) > 1 else None,
        index=IndexInfo(
            kind=settings.index.kind,
            built_on=newest.built_on if newest else "cpu",
            vectors=sum(s.ref.rows for s in segments),
        ),
        files=[
            e.model_copy(update={"language": languages.get(e.file, e.language)}) for e in _entries(plan, previous, new)
        ],
        run=RunStats(
            seconds=round(seconds, 2),
            files_processed=len(plan.to_process),
            pages_processed=pages_processed,
            chunks_embedded=new.chunks.total(),
            pages_per_s=round(pages_processed / seconds, 2),
            chunks_per_s=round(new.chunks.total() / seconds, 2),
            embed_workers=[
                EmbedWorker(worker=w, device=d, chunks=n, busy_seconds=round(new.busy[(w, d)], 2))
                for (w, d), n in sorted(new.workers.items())
            ],
        ),
        segments=[s.ref for s in segments],
    )


def _with_model(settings: Settings, model: str) -> Settings:
    return settings.model_copy(update={"embedding": settings.embedding.model_copy(update={"model": model})})


def _embedding_info(settings: Settings, dim: int | None, previous: Previous | None, fp: str) -> EmbeddingInfo:
    """The model's, with its dimension: this run's vectors', else the previous manifest's where it used the same
    settings, else the model's own."""
    model = settings.embedding.model
    if dim is None and previous is not None and previous.manifest.fingerprint == fp:
        known = [e for e in (previous.manifest.embedding, previous.manifest.multilingual) if e and e.model == model]
        dim = known[0].dim if known else None
    if dim is None:
        from rag.embedding import TextEncoder

        dim = TextEncoder(settings.embedding.model_copy(update={"device": "cpu"}), gpu_fraction=0).dim
    return EmbeddingInfo(model=model, dim=dim, normalize=settings.embedding.normalize)
