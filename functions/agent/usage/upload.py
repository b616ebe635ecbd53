"""Upload a usage file of any size to ``POST /api/usage`` in parts.

    python -m functions.agent.usage.upload usage.jsonl --url https://api.example.com --token "$TOKEN"
    python -m functions.agent.usage.upload spend.csv --url http://127.0.0.1:8081 --format litellm

Parts hold whole lines (JSONL) or whole rows with the header repeated (CSV), at most --part-bytes bytes and
--part-rows rows each; each part is atomic on the server and re-sending one is safe (rows are idempotent by
request_id), so a failed run can simply be started again. The token may also come from NETRA_TOKEN.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

DEFAULT_PART_BYTES = 1_000_000  # under the API's default MAX_BODY_BYTES of 1 MiB
DEFAULT_PART_ROWS = 20_000


def split_parts(
    path: Path, part_bytes: int = DEFAULT_PART_BYTES, part_rows: int = DEFAULT_PART_ROWS
) -> Iterator[tuple[int, int, bytes]]:
    """(part number, first data row of the part, body) for a JSONL or CSV file; a JSON array is one part."""
    with path.open("rb") as handle:
        first = handle.readline()
        if first.lstrip().startswith(b"["):  # a JSON array cannot be cut at line ends
            yield 1, 1, first + handle.read()
            return
        csv_mode = path.suffix.lower() == ".csv" or not first.lstrip().startswith(b"{")
        header = first if csv_mode else b""
        lines: list[bytes] = [] if csv_mode or not first.strip() else [_terminated(first)]
        part, first_row, size = 1, 1, len(header) + sum(len(x) for x in lines)
        for line in handle:
            if not line.strip():
                continue
            line = _terminated(line)
            if lines and (size + len(line) > part_bytes or len(lines) >= part_rows):
                yield part, first_row, header + b"".join(lines)
                part, first_row = part + 1, first_row + len(lines)
                lines, size = [], len(header)
            if len(header) + len(line) > part_bytes:
                raise ValueError(f"row {first_row + len(lines)} alone is larger than {part_bytes} bytes")
            lines.append(line)
            size += len(line)
        if lines:
            yield part, first_row, header + b"".join(lines)


def _terminated(line: bytes) -> bytes:
    return line if line.endswith(b"\n") else line + b"\n"


def upload(
    path: Path,
    url: str,
    token: str,
    fmt: str = "auto",
    part_bytes: int = DEFAULT_PART_BYTES,
    part_rows: int = DEFAULT_PART_ROWS,
    client: Any = None,
) -> dict[str, Any]:
    import httpx

    own = client is None
    client = client or httpx.Client(timeout=120, trust_env=False)
    content_type = "text/csv" if path.suffix.lower() == ".csv" else "application/x-ndjson"
    totals = {"parts": 0, "rows_inserted": 0, "rows_duplicate": 0}
    try:
        for part, first_row, body in split_parts(path, part_bytes, part_rows):
            response = client.post(
                f"{url.rstrip('/')}/api/usage",
                content=body,
                params={"format": fmt, "part": part, "first_row": first_row},
                headers={"Authorization": f"Bearer {token}", "Content-Type": content_type},
            )
            if response.status_code >= 300:
                raise RuntimeError(
                    f"part {part} (rows from {first_row}) failed with HTTP {response.status_code}: "
                    f"{response.text[:2000]}"
                )
            result = response.json()
            totals["parts"] += 1
            totals["rows_inserted"] += result["rows_inserted"]
            totals["rows_duplicate"] += result["rows_duplicate"]
            print(
                f"part {part}: {result['rows_inserted']} stored, {result['rows_duplicate']} already there",
                file=sys.stderr,
            )
    finally:
        if own:
            client.close()
    return totals


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m functions.agent.usage.upload",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("file", type=Path)
    parser.add_argument("--url", required=True, help="base URL of the agent API")
    parser.add_argument("--token", default=os.environ.get("NETRA_TOKEN"), help="access token (or NETRA_TOKEN)")
    parser.add_argument("--format", default="auto", choices=("auto", "netra", "litellm", "openai"))
    parser.add_argument("--part-bytes", type=int, default=DEFAULT_PART_BYTES)
    parser.add_argument("--part-rows", type=int, default=DEFAULT_PART_ROWS)
    args = parser.parse_args(argv)
    if not args.token:
        parser.error("an access token is required (--token or NETRA_TOKEN)")
    try:
        totals = upload(args.file, args.url, args.token, args.format, args.part_bytes, args.part_rows)
    except (OSError, ValueError, RuntimeError) as exc:
        print(f"upload failed: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(totals))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
