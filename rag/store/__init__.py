"""The index on disk, and the only code that opens its files: ``files`` (a version's manifest, a segment's files, their
sizes and hashes checked, a small file replaced whole), ``segments`` (the immutable parts a version lists),
``merging`` (segments rewritten as one), ``errors`` (a damaged version, a full disk), ``vectors`` (FAISS),
``lexical`` (BM25), ``reader`` (one version opened for search), ``versions`` (an index directory's versions, the
CURRENT pointer and the writer's lock)."""
