"""The index on disk, and the only code that opens its files: ``files`` (a version's files and manifest), ``vectors``
(FAISS), ``reader`` (one version opened for search), ``versions`` (an index directory's versions, the CURRENT pointer
and the writer's lock)."""
