"""The index on disk, and the only code that opens its files: ``files`` (a version's files, its manifest, their sizes
and hashes checked), ``errors`` (a damaged version, a full disk), ``vectors`` (FAISS), ``reader`` (one version opened
for search), ``versions`` (an index directory's versions, the CURRENT pointer and the writer's lock)."""
