"""Buckets of the in-process S3 server (the s3_endpoint fixture of tests/conftest.py)."""

import uuid

import httpx


def new_bucket(endpoint: str) -> str:
    bucket = f"imgpipe-{uuid.uuid4().hex[:12]}"
    response = httpx.put(f"{endpoint}/{bucket}", timeout=10)
    assert response.status_code == 200, response.text
    return bucket
