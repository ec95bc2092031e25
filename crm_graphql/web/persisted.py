"""Operations sent by hash instead of by document.

- Automatic persisted queries (Apollo's protocol, on by default): a request may carry
  `extensions.persistedQuery = {"version": 1, "sha256Hash": "<hex>"}` and no `query`. A hash
  the server has seen runs its document; an unknown one answers `PersistedQueryNotFound`
  (code PERSISTED_QUERY_NOT_FOUND, status 200, as Apollo Server answers it), and the client
  sends the document with its hash, which the server checks and remembers (LRU, bounded by
  the setting apq_cache_bytes).
- Trusted documents (setting trusted_documents): a manifest in the `persisted-documents.json`
  format of GraphQL Code Generator's client preset, `{"<hash>": "<document>"}`. Clients send
  the hash as `documentId` (the client preset) or as `extensions.persistedQuery.sha256Hash`
  (Apollo); every other document is refused, over HTTP and WebSocket alike.
"""

import hashlib
import json
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path

from graphql import GraphQLFormattedError

APQ_VERSION = 1
# The GraphQL-over-HTTP persisted documents proposal prefixes ids with their algorithm.
SHA256_PREFIX = "sha256:"


class PersistedQueryError(Exception):
    """A request whose persisted-query part cannot be honoured; `status` is its HTTP status."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    @property
    def formatted(self) -> GraphQLFormattedError:
        return {"message": self.message, "extensions": {"code": self.code}}


def not_found() -> PersistedQueryError:
    # The message and code Apollo's persisted-query link looks for before it retries with the
    # document; status 200, since Apollo Client before 3.7.16 stops persisting after a 400.
    return PersistedQueryError(200, "PERSISTED_QUERY_NOT_FOUND", "PersistedQueryNotFound")


def bad_request(message: str) -> PersistedQueryError:
    return PersistedQueryError(400, "BAD_REQUEST", message)


def requested_hash(extensions: object, document_id: object) -> str | None:
    """The hash a request names, by `documentId` or `extensions.persistedQuery`, if any."""
    if document_id is not None:
        if not isinstance(document_id, str) or not document_id:
            raise bad_request("`documentId` must be a non-empty string.")
        return document_id.removeprefix(SHA256_PREFIX)
    persisted = extensions.get("persistedQuery") if isinstance(extensions, dict) else None
    if persisted is None:
        return None
    if not isinstance(persisted, dict) or persisted.get("version") != APQ_VERSION:
        raise PersistedQueryError(
            400,
            "PERSISTED_QUERY_VERSION_NOT_SUPPORTED",
            f"extensions.persistedQuery must be {{version: {APQ_VERSION}, sha256Hash}}.",
        )
    sha256_hash = persisted.get("sha256Hash")
    if not isinstance(sha256_hash, str) or not sha256_hash:
        raise bad_request("extensions.persistedQuery.sha256Hash must be a non-empty string.")
    return sha256_hash


class DocumentCache:
    """Documents by hash, least recently used first out, at most `max_chars` in all."""

    def __init__(self, max_chars: int) -> None:
        self.max_chars = max_chars
        self.chars = 0
        self.documents: OrderedDict[str, str] = OrderedDict()

    def get(self, key: str) -> str | None:
        document = self.documents.get(key)
        if document is not None:
            self.documents.move_to_end(key)
        return document

    def put(self, key: str, document: str) -> None:
        if key in self.documents or len(document) > self.max_chars:
            return
        self.documents[key] = document
        self.chars += len(document)
        while self.chars > self.max_chars:
            _, evicted = self.documents.popitem(last=False)
            self.chars -= len(evicted)


class PersistedDocuments:
    def __init__(self, trusted: Mapping[str, str] | None, cache_chars: int) -> None:
        self.trusted = trusted
        self.cache = DocumentCache(cache_chars)

    @classmethod
    def load(cls, manifest: Path | None, cache_chars: int) -> "PersistedDocuments":
        return cls(read_manifest(manifest) if manifest else None, cache_chars)

    def document(self, query: object, extensions: object, document_id: object) -> object:
        """The document a request runs: `query` itself, or the one its hash names. Anything
        not a string (a malformed request) is returned as it came, for the usual checks."""
        key = requested_hash(extensions, document_id)
        if self.trusted is not None:
            return trusted_document(self.trusted, query, key)
        if key is None:
            return query
        if query is None:
            document = self.cache.get(key.lower())
            if document is None:
                raise not_found()
            return document
        if isinstance(query, str):
            if hashlib.sha256(query.encode()).hexdigest() != key.lower():
                raise PersistedQueryError(
                    400,
                    "PERSISTED_QUERY_HASH_MISMATCH",
                    "extensions.persistedQuery.sha256Hash is not the SHA-256 of the document.",
                )
            self.cache.put(key.lower(), query)
        return query


def trusted_document(trusted: Mapping[str, str], query: object, key: str | None) -> str:
    if key is None:
        raise PersistedQueryError(
            400,
            "TRUSTED_DOCUMENT_REQUIRED",
            "This server runs only its trusted documents: send the document's hash as "
            "`documentId` (or extensions.persistedQuery.sha256Hash), not the document.",
        )
    document = trusted.get(key)
    if document is None:
        raise PersistedQueryError(
            400,
            "PERSISTED_QUERY_NOT_IN_LIST",
            f"{key!r} is not the hash of one of this server's trusted documents.",
        )
    if query is not None and query != document:
        raise PersistedQueryError(
            400,
            "PERSISTED_QUERY_HASH_MISMATCH",
            "The document sent is not the trusted document of this hash.",
        )
    return document


def read_manifest(path: Path) -> dict[str, str]:
    """A `persisted-documents.json` manifest: a JSON object of hash to document."""
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ValueError(f"trusted_documents: cannot read {path}: {error}") from None
    if not isinstance(manifest, dict) or not all(
        isinstance(key, str) and isinstance(document, str) for key, document in manifest.items()
    ):
        raise ValueError(
            f"trusted_documents: {path} must hold a JSON object of hash to document, as "
            "GraphQL Code Generator's persisted-documents.json does"
        )
    return {key.removeprefix(SHA256_PREFIX): document for key, document in manifest.items()}
