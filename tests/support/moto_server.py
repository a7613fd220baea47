"""moto's S3 in server mode on loopback, stoppable and restartable on the same port.

The origin tests talk to it over real HTTP, exactly as to R2: no mocks of the S3 API.
Stopping it is a real outage (connections refused), which the circuit-breaker tests
need; restarting it on the same port brings the same endpoint back. moto keeps its
state in process memory, so buckets and objects survive a restart.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Final

import boto3
from botocore.config import Config
from moto.server import ThreadedMotoServer

if TYPE_CHECKING:
    from types import TracebackType

    from mypy_boto3_s3.client import S3Client

__all__ = ["ACCESS_KEY_ID", "REGION", "SECRET_ACCESS_KEY", "MotoServer"]

ACCESS_KEY_ID: Final = "test-access-key"  # dummy values: moto does not check them
SECRET_ACCESS_KEY: Final = "test-secret-key"
REGION: Final = "us-east-1"


class MotoServer:
    """A restartable moto server bound to ``127.0.0.1``."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._host = host
        self._port = port
        self._server: ThreadedMotoServer | None = None
        # One boto3 session: it loads the service models once, so clients made from it
        # (here and by the stores under test) are cheap.
        self.boto_session = boto3.session.Session()
        self._client: S3Client | None = None

    @property
    def port(self) -> int:
        """The bound port (known once started)."""
        return self._port

    @property
    def endpoint_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        if self._port == 0:
            raise RuntimeError("start() the server first")
        return f"http://{self._host}:{self._port}"

    @property
    def running(self) -> bool:
        """Whether the server is accepting connections."""
        return self._server is not None

    def start(self) -> str:
        """Start (again, on the same port once one was chosen); return the endpoint."""
        if self._server is not None:
            return self.endpoint_url
        server = ThreadedMotoServer(ip_address=self._host, port=self._port, verbose=False)
        server.start()
        self._port = server.get_host_and_port()[1]
        self._server = server
        return self.endpoint_url

    def stop(self) -> None:
        """Stop listening; the port stays reserved for :meth:`start`/:meth:`restart`."""
        server, self._server = self._server, None
        if server is not None:
            server.stop()

    def restart(self) -> str:
        """Stop (if running) and start again on the same port."""
        self.stop()
        return self.start()

    def client(self) -> S3Client:
        """A boto3 S3 client for test set-up (path-style, dummy credentials)."""
        return self.boto_session.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY_ID,
            aws_secret_access_key=SECRET_ACCESS_KEY,
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
        )

    def create_bucket(self, prefix: str = "kush-test") -> str:
        """Create a bucket with a unique name and return the name."""
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        if self._client is None:
            self._client = self.client()
        self._client.create_bucket(Bucket=name)
        return name

    def close(self) -> None:
        """Stop the server and close the set-up client."""
        self.stop()
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> MotoServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
