"""The S3/R2 origin store, one concern a module.

``store`` (`S3Origin`, and its writes with boto3) wires ``presign`` (presigned URLs,
reused), ``upstream`` (the guarded HTTP client: breaker, retry, error mapping),
``collapse`` (one shared fetch per object) and ``serve`` (streaming to the client with
Range and ETag); ``stats`` counts their traffic.
"""

from origin.s3.stats import OriginStats
from origin.s3.store import S3Origin

__all__ = ["OriginStats", "S3Origin"]
