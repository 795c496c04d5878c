"""Starts moto's S3 server for the tests (scripts/test runs it in moto's venv).

One change to moto, so that it answers as S3 does: listing times carry milliseconds (moto
zeroes them), since the S3 backend orders the versions and delete markers of one key by them
(the SDK returns the two in separate lists). Arguments are moto_server's (-H HOST -p PORT).
"""

import moto.core.serialize
import moto.core.utils
import moto.s3.models
from moto.server import main


def _with_millis(value):
    return moto.core.utils.iso_8601_datetime_with_milliseconds(value) if value else None


moto.s3.models.iso_8601_datetime_without_milliseconds_s3 = _with_millis
moto.core.serialize.TimestampSerializer.ISO8601_MICRO_ZEROED = "%Y-%m-%dT%H:%M:%S.%fZ"

if __name__ == "__main__":
    main()
