"""Thread titles: what a thread is about, in a line, from its redacted first prompt.

A title is the thread's first readable prompt (redacted text: placeholders such
as `<PERSON_1>` stand where names were), whitespace collapsed and shortened at a
word boundary. It is computed when read, never stored: it goes when the key of
its prompt is destroyed, like the prompt itself.
"""

from __future__ import annotations

from appliance.store import Store

TITLE_CHARS = 72
ELLIPSIS = "…"


def shorten(text: str, limit: int = TITLE_CHARS) -> str:
    """One line of at most `limit` characters, cut at a word boundary with an ellipsis."""
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    cut = flat[:limit - 1]
    space = cut.rfind(" ")
    if flat[limit - 1] != " " and space >= limit // 2:  # else one long word: cut inside it
        cut = cut[:space]
    return cut.rstrip(" ,;:-") + ELLIPSIS


def thread_titles(store: Store, thread_ids: list[str], *,
                  limit: int = TITLE_CHARS) -> dict[str, str]:
    """Title by thread id; threads whose every prompt was shredded (or empty) are absent."""
    out: dict[str, str] = {}
    wanted = list(dict.fromkeys(thread_ids))
    for start in range(0, len(wanted), 400):
        chunk = wanted[start:start + 400]
        rows = store.db.execute(
            "SELECT thread_id, id, bucket_id, text_ct FROM records WHERE thread_id IN "
            f"({','.join('?' * len(chunk))}) ORDER BY thread_id, ts, id", chunk).fetchall()
        for thread_id, rid, bid, ct in rows:
            if thread_id in out:
                continue
            text = store.text(rid, bid, ct)
            if text and text.strip():
                out[thread_id] = shorten(text, limit)
    return out
