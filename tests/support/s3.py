"""An S3 client of the tests' own (s3fs, not the API's SDK): what the API stored, seen from outside it."""

from __future__ import annotations

import s3fs
from minio.error import MinioAdminException

from provisioner.infra.s3users import S3Admin


def filesystem(endpoint_url: str, access_key: str, secret_key: str) -> s3fs.S3FileSystem:
    return s3fs.S3FileSystem(
        key=access_key, secret=secret_key, endpoint_url=endpoint_url, use_listings_cache=False, skip_instance_cache=True
    )


def user_exists(admin: S3Admin, user: str) -> bool:
    """Whether MinIO knows ``user``, asked through the provisioner's own admin client."""
    try:
        admin.admin.user_info(user)
    except MinioAdminException:
        return False
    return True
