"""S3 for payloads and images, DynamoDB for the batch index and replay nonces (one table, `pk`)."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

TTL_ATTRIBUTE = "expires_at"


class NonceStore(Protocol):
    def remember(self, key: str, ttl_s: int) -> bool:
        """Record a nonce; False if it was already there (a replay)."""


@dataclass
class MemoryNonceStore:
    """Nonces of one process (the local service)."""

    _seen: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def remember(self, key: str, ttl_s: int) -> bool:
        now = time.time()
        with self._lock:
            if len(self._seen) > 10_000:
                for k in [k for k, exp in self._seen.items() if exp < now]:
                    del self._seen[k]
            exp = self._seen.get(key)
            if exp is not None and exp >= now:
                return False
            self._seen[key] = now + ttl_s
            return True


def _boto_config(service: str):
    from botocore.config import Config

    kwargs: dict[str, Any] = {"retries": {"max_attempts": 3, "mode": "standard"}}
    if service == "s3":
        custom = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        kwargs["signature_version"] = "s3v4"
        kwargs["s3"] = {"addressing_style": "path" if custom else "virtual"}
    return Config(**kwargs)


class AwsStorage:
    """S3 bucket + DynamoDB table through boto3 clients (thread-safe, created once)."""

    def __init__(self, bucket: str, table: str, *, s3=None, dynamodb=None) -> None:
        import boto3

        self.bucket = bucket
        self.table = table
        # botocore reads AWS_DEFAULT_REGION; Lambda and most tools also set AWS_REGION
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None
        self.s3 = s3 or boto3.client("s3", region_name=region, config=_boto_config("s3"))
        self.ddb = dynamodb or boto3.client("dynamodb", region_name=region, config=_boto_config("dynamodb"))

    # --- S3
    def put_object(self, key: str, body: bytes, content_type: str, encoding: str | None = None) -> None:
        kwargs: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": key,
            "Body": body,
            "ContentType": content_type,
        }
        if encoding:
            kwargs["ContentEncoding"] = encoding
        self.s3.put_object(**kwargs)

    def get_object(self, key: str, max_bytes: int) -> bytes:
        obj = self.s3.get_object(Bucket=self.bucket, Key=key)
        if obj.get("ContentLength", 0) > max_bytes:
            raise ValueError(f"object {key} is {obj['ContentLength']} bytes, over the {max_bytes} limit")
        return obj["Body"].read(max_bytes + 1)

    def delete_object(self, key: str) -> None:
        self.s3.delete_object(Bucket=self.bucket, Key=key)

    def object_exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.s3.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def presign_put(self, key: str, content_type: str, expires_s: int) -> str:
        return self.s3.generate_presigned_url(
            "put_object",
            Params={"Bucket": self.bucket, "Key": key, "ContentType": content_type},
            ExpiresIn=expires_s,
            HttpMethod="PUT",
        )

    # --- DynamoDB
    def get_item(self, pk: str) -> dict[str, Any] | None:
        resp = self.ddb.get_item(TableName=self.table, Key={"pk": {"S": pk}}, ConsistentRead=True)
        item = resp.get("Item")
        return None if item is None else {k: _from_attr(v) for k, v in item.items()}

    def put_item_if_absent(self, item: dict[str, Any]) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.ddb.put_item(
                TableName=self.table,
                Item={k: _to_attr(v) for k, v in item.items()},
                ConditionExpression="attribute_not_exists(pk)",
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise
        return True


class DynamoNonceStore:
    """Nonces shared by every Lambda instance: a conditional put with a TTL."""

    def __init__(self, storage: AwsStorage) -> None:
        self.storage = storage

    def remember(self, key: str, ttl_s: int) -> bool:
        now = int(time.time())
        from botocore.exceptions import ClientError

        try:
            self.storage.ddb.put_item(
                TableName=self.storage.table,
                Item={"pk": {"S": f"nonce#{key}"}, TTL_ATTRIBUTE: {"N": str(now + ttl_s)}},
                # an expired nonce that DynamoDB has not yet deleted may be reused
                ConditionExpression=f"attribute_not_exists(pk) OR {TTL_ATTRIBUTE} < :now",
                ExpressionAttributeValues={":now": {"N": str(now)}},
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise
        return True


def _to_attr(v: Any) -> dict[str, str]:
    if isinstance(v, bool):
        return {"BOOL": v}  # type: ignore[dict-item]
    if isinstance(v, (int, float)):
        return {"N": str(v)}
    return {"S": str(v)}


def _from_attr(v: dict[str, Any]) -> Any:
    if "S" in v:
        return v["S"]
    if "N" in v:
        n = v["N"]
        return int(n) if n.lstrip("-").isdigit() else float(n)
    if "BOOL" in v:
        return v["BOOL"]
    return v


def create_resources(bucket: str, table: str, *, s3=None, dynamodb=None) -> None:
    """Create the bucket and table if missing (local S3/DynamoDB and tests; CloudFormation on AWS)."""
    from botocore.exceptions import ClientError

    st = AwsStorage(bucket, table, s3=s3, dynamodb=dynamodb)
    try:
        st.s3.create_bucket(Bucket=bucket)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in (
            "BucketAlreadyOwnedByYou",
            "BucketAlreadyExists",
        ):
            raise
    try:
        st.ddb.create_table(
            TableName=table,
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )
        st.ddb.get_waiter("table_exists").wait(
            TableName=table, WaiterConfig={"Delay": 0.2, "MaxAttempts": 50}
        )
        st.ddb.update_time_to_live(
            TableName=table, TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE}
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ResourceInUseException":
            raise
