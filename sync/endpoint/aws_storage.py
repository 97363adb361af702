"""AwsStorage: an S3 bucket and a DynamoDB table (one table, `pk`), on AWS or any compatible service
chosen by the standard AWS variables; `create_resources` makes them for tests and local stacks."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from typing import Any

from edge_ocr.errors import ConfigError
from edge_ocr_sync.endpoint.storage import TTL_ATTRIBUTE, MissingObject

logger = logging.getLogger(__name__)


def _boto_config(service: str):
    from botocore.config import Config

    kwargs: dict[str, Any] = {"retries": {"max_attempts": 3, "mode": "standard"}}
    if service == "s3":
        custom = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        kwargs["signature_version"] = "s3v4"
        kwargs["s3"] = {"addressing_style": "path" if custom else "virtual"}
    return Config(**kwargs)


def _region() -> str | None:
    # botocore reads AWS_DEFAULT_REGION; Lambda and most tools also set AWS_REGION
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None


def _error_code(exc: Exception) -> str:
    return getattr(exc, "response", {}).get("Error", {}).get("Code", "")


class AwsStorage:
    """S3 bucket + DynamoDB table through boto3 clients (thread-safe, created once)."""

    kind = "aws"

    def __init__(self, bucket: str, table: str, *, s3=None, dynamodb=None) -> None:
        import boto3

        self.bucket = bucket
        self.table = table
        self.s3 = s3 or boto3.client("s3", region_name=_region(), config=_boto_config("s3"))
        self.ddb = dynamodb or boto3.client(
            "dynamodb", region_name=_region(), config=_boto_config("dynamodb")
        )

    def close(self) -> None:
        pass

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
        from botocore.exceptions import ClientError

        try:
            obj = self.s3.get_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                raise MissingObject(key) from None
            raise
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
            if _error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def list_keys(self, prefix: str) -> Iterator[str]:
        for key, _ in self.list_objects(prefix):
            yield key

    def list_objects(self, prefix: str, start_after: str = "") -> Iterator[tuple[str, float]]:
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        if start_after:
            kwargs["StartAfter"] = start_after
        for page in self.s3.get_paginator("list_objects_v2").paginate(**kwargs):
            for obj in page.get("Contents", []):
                yield obj["Key"], obj["LastModified"].timestamp()

    def presign_put(self, key: str, content_type: str, expires_s: int, base_url: str) -> str:
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
            if _error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def put_item(self, item: dict[str, Any]) -> None:
        self.ddb.put_item(TableName=self.table, Item={k: _to_attr(v) for k, v in item.items()})

    def delete_prefix(self, prefix: str) -> int:
        """Every version and delete marker under `prefix` (the template's bucket is versioned)."""
        n = 0
        batch: list[dict[str, str]] = []

        def flush() -> None:
            if batch:
                self.s3.delete_objects(Bucket=self.bucket, Delete={"Objects": list(batch), "Quiet": True})
                batch.clear()

        for page in self.s3.get_paginator("list_object_versions").paginate(Bucket=self.bucket, Prefix=prefix):
            for v in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]:
                entry = {"Key": v["Key"]}
                if v.get("VersionId") and v["VersionId"] != "null":
                    entry["VersionId"] = v["VersionId"]
                batch.append(entry)
                n += 1 if v in page.get("Versions", []) else 0
                if len(batch) == 1000:
                    flush()
        flush()
        return n

    def delete_items(self, pk_prefix: str) -> int:
        n = 0
        for page in self.ddb.get_paginator("scan").paginate(
            TableName=self.table,
            ProjectionExpression="pk",
            FilterExpression="begins_with(pk, :p)",
            ExpressionAttributeValues={":p": {"S": pk_prefix}},
            ConsistentRead=True,
        ):
            for item in page.get("Items", []):
                self.ddb.delete_item(TableName=self.table, Key={"pk": item["pk"]})
                n += 1
        return n

    def remember_nonce(self, key: str, ttl_s: int) -> bool:
        """Shared by every Lambda instance and local process: a conditional put with a TTL."""
        from botocore.exceptions import ClientError

        now = int(time.time())
        try:
            self.ddb.put_item(
                TableName=self.table,
                Item={"pk": {"S": f"nonce#{key}"}, TTL_ATTRIBUTE: {"N": str(now + ttl_s)}},
                # an expired nonce that DynamoDB has not yet deleted may be reused
                ConditionExpression=f"attribute_not_exists(pk) OR {TTL_ATTRIBUTE} < :now",
                ExpressionAttributeValues={":now": {"N": str(now)}},
            )
        except ClientError as exc:
            if _error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise
        return True


def _to_attr(v: Any) -> dict[str, Any]:
    if isinstance(v, bool):
        return {"BOOL": v}
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
    """Create the bucket and table if missing (local S3/DynamoDB and tests; CloudFormation on AWS).
    Raises ConfigError, naming what failed, when the service refuses."""
    from botocore.exceptions import BotoCoreError, ClientError

    st = AwsStorage(bucket, table, s3=s3, dynamodb=dynamodb)
    region = st.s3.meta.region_name or "us-east-1"
    kwargs: dict[str, Any] = {"Bucket": bucket}
    if region != "us-east-1":  # S3 wants the region named for every region but us-east-1
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
    try:
        st.s3.create_bucket(**kwargs)
    except ClientError as exc:
        if _error_code(exc) not in ("BucketAlreadyOwnedByYou",):
            raise ConfigError(
                f"cannot create bucket {bucket!r} in {region}: {exc}; check the name, the region "
                "(AWS_REGION) and the credentials"
            ) from None
    except BotoCoreError as exc:
        raise ConfigError(f"cannot create bucket {bucket!r} in {region}: {exc}") from None
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
        if _error_code(exc) != "ResourceInUseException":
            raise ConfigError(f"cannot create table {table!r} in {region}: {exc}") from None
    except BotoCoreError as exc:
        raise ConfigError(f"cannot create table {table!r} in {region}: {exc}") from None
    logger.info("bucket %s and table %s are ready in %s", bucket, table, region)
